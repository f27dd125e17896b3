<?php

namespace Paymenter\Extensions\Servers\ProxmoxWP;

use App\Attributes\ExtensionMeta;
use App\Classes\Extension\Server;
use App\Models\Service;
use Illuminate\Support\Facades\Log;
use Illuminate\Support\Facades\URL;
use Illuminate\Support\Facades\View;
use Throwable;

#[ExtensionMeta(
    name: 'ProxmoxWP',
    description: 'Managed WordPress sites in LXC containers on Proxmox VE: created on payment, with SSL, custom domains and backups.',
    version: '1.5.0',
    author: 'ProxmoxWP',
)]
class ProxmoxWP extends Server
{
    /** The view's name, also the `tab` of the service page. */
    public const VIEW = 'overview';

    /**
     * Seconds the create, suspend, unsuspend and upgrade hooks spend following their job, counted from the hook's
     * start, the last poll included. Paymenter's queue hands a job that has run for `retry_after` (90 s) to another
     * worker, and its one worker also sends every e-mail: a hook stays well under that, and a job still running then
     * is left to finish (its result shows in the Overview; a failure reaches the API's failure webhook).
     */
    public const DEFAULT_JOB_WAIT = 20;

    public const MAX_JOB_WAIT = 45;

    private ?ApiClient $client = null;

    public function boot(): void
    {
        View::addNamespace('proxmoxwp', __DIR__ . '/resources/views');
        require __DIR__ . '/routes.php';
    }

    public function getConfig($values = []): array
    {
        return [
            [
                // 1.4.0's name and label, so that a server saved by 1.4.0 works as it is
                'name' => 'api_base',
                'type' => 'text',
                'label' => 'Backend API Base URL',
                'description' => 'Base URL of the ProxmoxWP API, for example https://wp-api.example.net',
                'required' => true,
                'validation' => 'url',
            ],
            [
                'name' => 'api_key',
                'type' => 'text',
                'label' => 'API key',
                'description' => 'One of the tokens in the API\'s PROXMOXWP_API_TOKENS',
                'required' => true,
                'encrypted' => true,
            ],
            [
                'name' => 'public_ip',
                'type' => 'text',
                'label' => 'Public IP',
                'description' => 'The address of the reverse proxy that the sites\' DNS records point to',
                'required' => true,
                'validation' => 'ip',
            ],
            [
                'name' => 'job_wait',
                'type' => 'number',
                'label' => 'Seconds to follow a change',
                'description' => 'How long creating, suspending, unsuspending and upgrading wait for the site\'s job, so that a failure is marked in Paymenter (0: do not wait). A new order\'s welcome e-mail goes out after it.',
                'required' => false,
                'default' => self::DEFAULT_JOB_WAIT,
                'validation' => 'nullable|integer|min:0|max:' . self::MAX_JOB_WAIT,
            ],
        ];
    }

    public function testConfig(): bool|string
    {
        try {
            $this->client()->check();
        } catch (ApiError $error) {
            return $error->getMessage();
        }

        return true;
    }

    public function getProductConfig($values = []): array
    {
        return [
            [
                'name' => 'plan',
                'type' => 'text',
                'label' => 'Plan',
                'description' => 'The plan name in the API\'s plans file (basic, premium, ...). Empty: the product\'s name in lower case.',
                'required' => false,
                'validation' => 'nullable|regex:/^[a-z0-9][a-z0-9_-]{0,31}$/',
            ],
        ];
    }

    // --- the service's life ---

    /**
     * Creates the site and follows its job. Throws when the API refuses or the job fails (Paymenter marks the service
     * failed; a retry is safe: the API makes one site per service); otherwise returns what the "service created"
     * e-mail shows. The password is only in the first answer: the API forgets it once the site is installed.
     *
     * The answer keeps 1.4.0's keys, `success` and `data` (the API's whole answer), beside the named ones, so that
     * an e-mail template written for 1.4.0 still finds what it prints.
     */
    public function createServer(Service $service, $settings, $properties)
    {
        $started = microtime(true);
        $answer = $this->client()->createSite((int) $service->id, (string) $service->user->email, $this->plan($service, $settings), (string) $this->config('public_ip'));
        $this->followJob($answer, $started, 'The site could not be created');

        return array_filter([
            'site_url' => $answer['site_url'] ?? null,
            'admin_url' => $answer['admin_url'] ?? null,
            'admin_user' => $answer['admin_user'] ?? null,
            'admin_password' => $answer['admin_password'] ?? null,
            'subdomain' => $answer['subdomain'] ?? null,
        ], fn ($value) => $value !== null && $value !== '') + ['success' => true, 'data' => $answer];
    }

    public function suspendServer(Service $service, $settings, $properties)
    {
        $this->followJob($this->client()->suspendSite((int) $service->id), microtime(true), 'The site could not be suspended');

        return true;
    }

    public function unsuspendServer(Service $service, $settings, $properties)
    {
        $this->followJob($this->client()->unsuspendSite((int) $service->id), microtime(true), 'The site could not be unsuspended');

        return true;
    }

    /** Never blocks the termination in Paymenter: a backend error is logged for the operator to clean up. */
    public function terminateServer(Service $service, $settings, $properties)
    {
        try {
            $this->client()->deleteSite((int) $service->id);
        } catch (ApiError $error) {
            Log::error('ProxmoxWP: deleting the site of service ' . $service->id . ' failed: ' . $error->getMessage(), ['status' => $error->status, 'code' => $error->reason]);

            return false;
        }

        return true;
    }

    public function upgradeServer(Service $service, $settings, $properties)
    {
        $this->followJob($this->client()->upgradeSite((int) $service->id, $this->plan($service, $settings)), microtime(true), 'The site could not be moved to its new plan');

        return true;
    }

    // --- the client area ---

    public function getActions(Service $service, $settings = [], $properties = []): array
    {
        return [
            ['type' => 'view', 'name' => self::VIEW, 'label' => 'Overview', 'function' => 'getView'],
            ['type' => 'button', 'label' => 'Log in to WordPress', 'function' => 'loginToWordPress'],
            ['type' => 'button', 'label' => 'Start', 'function' => 'startSite'],
            ['type' => 'button', 'label' => 'Stop', 'function' => 'stopSite'],
            ['type' => 'button', 'label' => 'Restart', 'function' => 'restartSite'],
            ['type' => 'button', 'label' => 'Reset', 'function' => 'resetSite'],
        ];
    }

    public function getView(Service $service, $settings, $properties, $view)
    {
        return $this->clientArea($service)->render();
    }

    /**
     * Paymenter sends the browser to the address a button answers: the API's single-use link into wp-admin (as the
     * bundled cPanel and Virtualizor extensions do for their single sign-on), or the Overview with the reason there
     * is none now.
     */
    public function loginToWordPress(Service $service, $settings = [], $properties = []): string
    {
        $answer = $this->safely($service, fn (ClientArea $area) => $area->login());
        if (is_string($answer)) {
            return $answer;
        }
        Notice::flash($answer);

        return self::overviewUrl($service);
    }

    /** The Overview's activity, for its JSON feed (ActivityFeed, through Paymenter's callService). */
    public function activity(Service $service, $settings = [], $properties = []): array
    {
        try {
            return $this->clientArea($service)->activity();
        } catch (Throwable $error) {
            Log::error('ProxmoxWP: the activity of service ' . $service->id . ' could not be read: ' . $error::class . ': ' . $error->getMessage());

            return ['error' => 'Something went wrong on our side.'];
        }
    }

    public function startSite(Service $service, $settings = [], $properties = []): string
    {
        return $this->button($service, fn (ClientArea $area) => $area->power('start'));
    }

    public function stopSite(Service $service, $settings = [], $properties = []): string
    {
        return $this->button($service, fn (ClientArea $area) => $area->power('stop'));
    }

    public function restartSite(Service $service, $settings = [], $properties = []): string
    {
        return $this->button($service, fn (ClientArea $area) => $area->power('restart'));
    }

    /** Reset erases the site: the button asks for a confirmation on the Overview, whose form then resets. */
    public function resetSite(Service $service, $settings = [], $properties = []): string
    {
        return $this->button($service, fn (ClientArea $area) => $area->askToConfirmReset());
    }

    /** A form of the Overview, posted to this extension's route. Returns the notice shown after the redirect. */
    public function handlePanelForm(Service $service, $settings, $properties, array $input): array
    {
        return $this->safely($service, fn (ClientArea $area) => $area->handle($input));
    }

    // --- helpers ---

    public function client(): ApiClient
    {
        return $this->client ??= new ApiClient($this->apiBase(), (string) $this->config('api_key'));
    }

    /** The API's URL: `api_base` (1.4.0's setting and this one's), else `api_url`, the name 1.0.0 gave it. */
    private function apiBase(): string
    {
        $base = trim((string) $this->config('api_base'));

        return $base !== '' ? $base : trim((string) $this->config('api_url'));
    }

    public function clientArea(Service $service): ClientArea
    {
        return new ClientArea($this->client(), $service);
    }

    /** The URL of the service page's Overview, where a button's notice is shown. */
    public static function overviewUrl(Service $service): string
    {
        return URL::route('services.show', ['service' => $service->id, 'tab' => self::VIEW]);
    }

    private function button(Service $service, callable $action): string
    {
        Notice::flash($this->safely($service, $action));

        return self::overviewUrl($service);
    }

    /**
     * What an action on the client area answers (a notice, or the address of a link). An API refusal becomes a
     * notice; anything else unexpected is logged for the operator and the customer reads a plain sentence, never an
     * exception's text.
     */
    private function safely(Service $service, callable $action): array|string
    {
        try {
            return $action($this->clientArea($service));
        } catch (ApiError $error) {
            return Notice::error($error->getMessage());
        } catch (Throwable $error) {
            Log::error('ProxmoxWP: an action on service ' . $service->id . ' failed: ' . $error::class . ': ' . $error->getMessage());

            return Notice::error('Something went wrong on our side. Please try again in a few minutes.');
        }
    }

    private function plan(Service $service, $settings): string
    {
        $plan = trim((string) ($settings['plan'] ?? ''));

        return $plan !== '' ? $plan : strtolower(trim((string) $service->product->name));
    }

    private function jobWait(): int
    {
        $wait = $this->config('job_wait');

        return ($wait === null || $wait === '') ? self::DEFAULT_JOB_WAIT : min(self::MAX_JOB_WAIT, max(0, (int) $wait));
    }

    /**
     * Follows the job an answer started until it ends or `job_wait` seconds after `$started`, each poll's own limit cut
     * to the time left (Paymenter records a hook as failed only by an exception, so a job that fails must throw
     * here). A job still running then, or one the API cannot tell about in time, is left to finish.
     */
    private function followJob(array $answer, float $started, string $failure): void
    {
        if (empty($answer['job_id'])) {
            return;
        }
        $deadline = $started + $this->jobWait();
        while (($left = $deadline - microtime(true)) > 0) {
            try {
                $job = $this->client()->job((int) $answer['job_id'], (int) ceil($left));
            } catch (ApiError $error) {
                if ($error->unreachable()) {
                    return;  // not reached, or not in the time left: the job goes on without us
                }
                throw $error;
            }
            $state = $job['state'] ?? '';
            if ($state === 'succeeded') {
                return;
            }
            if ($state === 'failed' || $state === 'cancelled') {
                throw new ApiError($failure . ': ' . ErrorText::clean((string) ($job['message'] ?? "the job was {$state}.")));
            }
            usleep(1_000_000);
        }
    }
}
