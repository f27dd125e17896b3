<?php

namespace Paymenter\Extensions\Servers\ProxmoxWP;

use Illuminate\Container\Container;
use Illuminate\Http\Client\Factory;
use Illuminate\Http\Client\PendingRequest;
use Illuminate\Http\Client\Pool;
use Illuminate\Http\Client\Response;
use Throwable;

/**
 * The ProxmoxWP API as Paymenter calls it: a bearer token, JSON both ways, 25 seconds at most per call. Every
 * method returns the API's decoded answer or throws ApiError with a text a customer may read.
 */
class ApiClient
{
    /** Seconds per call: below PHP's and the panel's own limits, above the API's slowest synchronous answer. */
    public const TIMEOUT = 25;

    public const CONNECT_TIMEOUT = 5;

    /** Seconds a login link may wait for its site's key to be set up: the customer is looking at the button. */
    public const LOGIN_WAIT = 15;

    /** The largest service id Paymenter can have: check() asks for it to see that the key is accepted. */
    private const NO_SUCH_SERVICE = 999999999999999999;

    private readonly string $baseUrl;

    private readonly Factory $http;

    public function __construct(string $baseUrl, private readonly string $token, ?Factory $http = null)
    {
        $this->baseUrl = rtrim(trim($baseUrl), '/');
        // Paymenter's own HTTP factory when there is one (Http::fake and its listeners see our calls), else a new one.
        $container = Container::getInstance();
        $this->http = $http ?? ($container->bound(Factory::class) ? $container->make(Factory::class) : new Factory());
    }

    // --- the site's life, called by Paymenter's hooks ---

    public function createSite(int $serviceId, string $email, string $plan, string $publicIp): array
    {
        return $this->post('/create-site', ['service_id' => $serviceId, 'email' => $email, 'plan' => $plan, 'public_ip' => $publicIp]);
    }

    public function deleteSite(int $serviceId): array
    {
        return $this->post('/delete-site', ['service_id' => $serviceId]);
    }

    public function suspendSite(int $serviceId): array
    {
        return $this->post('/suspend-site', ['service_id' => $serviceId]);
    }

    public function unsuspendSite(int $serviceId): array
    {
        return $this->post('/unsuspend-site', ['service_id' => $serviceId]);
    }

    public function upgradeSite(int $serviceId, string $plan): array
    {
        return $this->post('/wp/upgrade/', ['service_id' => $serviceId, 'plan' => $plan]);
    }

    /** start, stop, restart or reset; `status` is Paymenter's own status of the service, recorded with the job. */
    public function power(int $serviceId, string $action, ?string $status = null): array
    {
        $body = ['service_id' => $serviceId, 'action' => $action];
        if ($status !== null && $status !== '') {
            $body['status'] = substr($status, 0, 32);
        }

        return $this->post('/action/power', $body);
    }

    // --- what the client area shows and changes ---

    public function status(int $serviceId): array
    {
        return $this->get('/status', ['service_id' => $serviceId]);
    }

    public function domains(int $serviceId): array
    {
        return $this->get('/action/getdomain', ['service_id' => $serviceId]);
    }

    public function addDomain(int $serviceId, string $domain): array
    {
        return $this->post('/action/setdomain', ['service_id' => $serviceId, 'domain' => $domain]);
    }

    public function removeDomain(int $serviceId, string $domain): array
    {
        return $this->post('/action/deldomain', ['service_id' => $serviceId, 'domain' => $domain]);
    }

    public function backups(int $serviceId): array
    {
        return $this->get('/action/getbak', ['service_id' => $serviceId]);
    }

    public function createBackup(int $serviceId): array
    {
        return $this->post('/action/mkbak', ['service_id' => $serviceId]);
    }

    public function deleteBackup(int $serviceId, string $backup): array
    {
        return $this->post('/action/delbak', ['service_id' => $serviceId, 'bak' => $backup]);
    }

    public function restoreBackup(int $serviceId, string $backup): array
    {
        return $this->post('/action/rollback', ['service_id' => $serviceId, 'bak' => $backup]);
    }

    public function toggleProxy(int $serviceId): array
    {
        return $this->post('/action/toggle', ['service_id' => $serviceId]);
    }

    /**
     * A single-use link into wp-admin (`login_url`). A site that does not hold its login key yet is given it by a job
     * first, waited for up to LOGIN_WAIT seconds; after that the answer has no link, only the job.
     */
    public function loginLink(int $serviceId): array
    {
        return $this->post('/action/login-link', ['service_id' => $serviceId, 'wait' => self::LOGIN_WAIT]);
    }

    /** A new password for the site's administrator (`admin_password`), answered this once; the job sets it. */
    public function newAdminPassword(int $serviceId): array
    {
        return $this->post('/action/admin-password', ['service_id' => $serviceId]);
    }

    /** The job; `$timeout` shortens the call's own limit (TIMEOUT), for a caller that must be done by a deadline. */
    public function job(int $jobId, ?int $timeout = null): array
    {
        return $this->get("/jobs/{$jobId}", [], $timeout)['job'] ?? [];
    }

    /** The service's jobs, newest first. */
    public function jobs(int $serviceId, int $limit = 20): array
    {
        return $this->get('/jobs', ['service_id' => $serviceId, 'limit' => $limit])['jobs'] ?? [];
    }

    /**
     * The URL is a ProxmoxWP API and the key is accepted: /health answers, and asking for a site that does not exist
     * gets "no such site" (a wrong key gets 401, a wrong URL a 404 of another kind or no JSON at all).
     */
    public function check(): void
    {
        $health = $this->get('/health');
        if (($health['status'] ?? null) !== 'ok') {
            throw new ApiError('This URL does not answer as a ProxmoxWP API.');
        }
        try {
            $this->get('/status', ['service_id' => self::NO_SUCH_SERVICE]);
        } catch (ApiError $error) {
            if ($error->reason !== 'unknown_service') {
                throw $error;
            }
        }
    }

    /**
     * Status, domains and backups of a site at once (three concurrent calls: one page render waits for the slowest,
     * not for their sum). Each entry is the decoded answer or the ApiError of that call alone.
     *
     * @return array{status: array|ApiError, domains: array|ApiError, backups: array|ApiError}
     */
    public function overview(int $serviceId): array
    {
        $query = ['service_id' => $serviceId];
        $paths = ['status' => '/status', 'domains' => '/action/getdomain', 'backups' => '/action/getbak'];
        try {
            $answers = $this->http->pool(function (Pool $pool) use ($paths, $query) {
                $requests = [];
                foreach ($paths as $name => $path) {
                    $requests[] = $this->configure($pool->as($name))->get($this->baseUrl . $path, $query);
                }

                return $requests;
            });
        } catch (Throwable $error) {
            $answers = array_fill_keys(array_keys($paths), $error);
        }
        $results = [];
        foreach ($paths as $name => $path) {
            try {
                $results[$name] = $this->decode($answers[$name] ?? null);
            } catch (ApiError $error) {
                $results[$name] = $error;
            }
        }

        return $results;
    }

    // --- transport ---

    private function get(string $path, array $query = [], ?int $timeout = null): array
    {
        return $this->send('get', $path, $query, $timeout);
    }

    private function post(string $path, array $body): array
    {
        return $this->send('post', $path, $body);
    }

    private function send(string $method, string $path, array $data, ?int $timeout = null): array
    {
        if ($this->baseUrl === '') {
            throw new ApiError('The ProxmoxWP API URL is not configured.');
        }
        try {
            $answer = $this->configure($this->http->asJson(), $timeout)->{$method}($this->baseUrl . $path, $data);
        } catch (Throwable $error) {
            $answer = $error;
        }

        return $this->decode($answer);
    }

    private function configure(PendingRequest $request, ?int $timeout = null): PendingRequest
    {
        $timeout = max(1, min(self::TIMEOUT, $timeout ?? self::TIMEOUT));

        return $request->withToken($this->token)
            ->acceptJson()
            ->timeout($timeout)
            ->withOptions(['connect_timeout' => min(self::CONNECT_TIMEOUT, $timeout)]);
    }

    /** The answer's JSON on success; an ApiError with the cleaned reason otherwise (never the URL or the token). */
    private function decode(mixed $answer): array
    {
        if (!$answer instanceof Response) {
            $detail = $answer instanceof Throwable ? $answer->getMessage() : '';
            $why = preg_match('/timed out|timeout/i', $detail) ? 'did not answer in time' : 'could not be reached';
            throw new ApiError("The hosting API {$why}. Please try again in a few minutes.");
        }
        $data = $answer->json();
        if ($answer->successful() && is_array($data)) {
            return $data;
        }
        if ($answer->successful()) {
            throw new ApiError('The hosting API gave an answer that is not JSON.', $answer->status());
        }
        $reason = is_array($data) && is_string($data['code'] ?? null) ? $data['code'] : null;

        throw new ApiError(ErrorText::fromAnswer($answer->status(), $answer->body()), $answer->status(), $reason);
    }
}
