<?php

namespace Paymenter\Extensions\Servers\ProxmoxWP;

use App\Models\Service;
use Illuminate\Support\Facades\Session;
use Illuminate\Support\Facades\URL;
use Illuminate\Support\Facades\View;

/**
 * The site's page in Paymenter's client area: what it shows (status, domains, backups, the proxy switch) and what
 * its forms and buttons do. Every action answers a notice; an API refusal becomes an error notice, never an exception.
 */
class ClientArea
{
    private const BACKUP_NAME = '/^BAK\d{8}-\d+$/';

    private const POWER_NOTICES = [
        'start' => 'Your site is starting.',
        'stop' => 'Your site is stopping.',
        'restart' => 'Your site is restarting.',
        'reset' => 'Your site is being reset to its freshly installed state.',
    ];

    public function __construct(private readonly ApiClient $client, private readonly Service $service) {}

    /** The Overview's HTML: three API calls at once; a part whose call failed shows its error, the rest renders. */
    public function render(): string
    {
        $parts = $this->client->overview($this->serviceId());
        $site = self::value($parts['status']);

        return View::make('proxmoxwp::overview', [
            'notice' => Notice::current(),
            'confirmReset' => Session::get(Notice::CONFIRM_KEY) === true,
            'formUrl' => URL::route('extensions.servers.proxmoxwp.panel', ['service' => $this->service->id]),
            'csrfToken' => Session::token(),
            'site' => $site,
            'siteLink' => self::webLink($site['site_url'] ?? null),
            'siteError' => self::error($parts['status']),
            'activity' => $site !== null ? Activity::of($site) : null,
            'activityUrl' => URL::route('extensions.servers.proxmoxwp.activity', ['service' => $this->service->id]),
            'domains' => self::value($parts['domains']),
            'domainsError' => self::error($parts['domains']),
            'backups' => self::value($parts['backups']),
            'backupsError' => self::error($parts['backups']),
        ])->render();
    }

    /** What the Overview's activity part shows (Activity); an API that cannot be asked gives `error` instead. */
    public function activity(): array
    {
        try {
            return Activity::of($this->client->status($this->serviceId()));
        } catch (ApiError $error) {
            return ['error' => $error->getMessage()];
        }
    }

    /** A form of the Overview: `action` and its field (`domain` or `bak`). */
    public function handle(array $input): array
    {
        $action = is_string($input['action'] ?? null) ? $input['action'] : '';
        if (!$this->serviceIsActive()) {
            return Notice::error('This service is not active, so its site cannot be changed.');
        }
        try {
            return match ($action) {
                'add_domain' => $this->addDomain(self::field($input, 'domain')),
                'remove_domain' => $this->removeDomain(self::field($input, 'domain')),
                'create_backup' => $this->createBackup(),
                'delete_backup' => $this->deleteBackup(self::field($input, 'bak')),
                'restore_backup' => $this->restoreBackup(self::field($input, 'bak')),
                'toggle_proxy' => $this->toggleProxy(),
                'new_password' => $this->newPassword(),
                'reset' => $this->power('reset'),
                default => Notice::error('That action is not available.'),
            };
        } catch (ApiError $error) {
            return Notice::error($error->getMessage());
        }
    }

    public function power(string $action): array
    {
        if (!isset(self::POWER_NOTICES[$action])) {
            return Notice::error('That action is not available.');
        }
        if (!$this->serviceIsActive()) {
            return Notice::error('This service is not active, so its site cannot be changed.');
        }
        try {
            $this->client->power($this->serviceId(), $action, is_string($this->service->status ?? null) ? $this->service->status : null);
        } catch (ApiError $error) {
            return Notice::error($error->getMessage());
        }

        return Notice::success(self::POWER_NOTICES[$action]);
    }

    /**
     * The address that logs the customer in to WordPress (a single-use link, good for a minute), or the notice that
     * says why there is none now: the site does not run, or it is being given its login key (a site made before
     * one-click login, or restored from an older backup) and the link comes in a minute.
     */
    public function login(): string|array
    {
        if (!$this->serviceIsActive()) {
            return Notice::error('This service is not active, so its site cannot be logged in to.');
        }
        try {
            $answer = $this->client->loginLink($this->serviceId());
        } catch (ApiError $error) {
            return Notice::error($error->getMessage());
        }
        $link = self::webLink($answer['login_url'] ?? null);
        if ($link !== null) {
            return $link;
        }

        return Notice::success('One-click login is being set up on your site. Try "Log in to WordPress" again in a minute.');
    }

    /** Reset erases every change since the site was installed: the Overview asks first. */
    public function askToConfirmReset(): array
    {
        Session::flash(Notice::CONFIRM_KEY, true);

        return Notice::success('Reset puts your site back as it was installed: every post, upload and plugin since then is erased. Confirm below to go on.');
    }

    private function addDomain(string $domain): array
    {
        if ($domain === '') {
            return Notice::error('Enter a domain name, such as www.example.com.');
        }
        if (strlen($domain) > 253) {
            return Notice::error('That domain name is too long.');
        }
        $answer = $this->client->addDomain($this->serviceId(), $domain);
        $name = (string) ($answer['domain_unicode'] ?? $answer['domain'] ?? $domain);

        return Notice::success(($answer['domain_state'] ?? '') === 'active'
            ? "{$name} is attached to your site."
            : "{$name} is being attached to your site; its certificate follows within a few minutes.");
    }

    private function removeDomain(string $domain): array
    {
        if ($domain === '') {
            return Notice::error('Choose a domain to remove.');
        }
        $this->client->removeDomain($this->serviceId(), $domain);

        return Notice::success("{$domain} is being removed from your site.");
    }

    private function createBackup(): array
    {
        $answer = $this->client->createBackup($this->serviceId());

        return Notice::success('Backup ' . ($answer['bak'] ?? '') . ' is being made.');
    }

    private function deleteBackup(string $backup): array
    {
        if (!preg_match(self::BACKUP_NAME, $backup)) {
            return Notice::error('Choose a backup to delete.');
        }
        $this->client->deleteBackup($this->serviceId(), $backup);

        return Notice::success("Backup {$backup} is being deleted.");
    }

    private function restoreBackup(string $backup): array
    {
        if (!preg_match(self::BACKUP_NAME, $backup)) {
            return Notice::error('Choose a backup to restore.');
        }
        $this->client->restoreBackup($this->serviceId(), $backup);

        return Notice::success("Your site is being restored to backup {$backup}.");
    }

    /**
     * A new administrator password, shown in this notice once: it travels in the session's flash data to the next
     * page and is gone after it. The API keeps none of it.
     */
    private function newPassword(): array
    {
        $answer = $this->client->newAdminPassword($this->serviceId());
        $password = (string) ($answer['admin_password'] ?? '');
        if ($password === '') {
            return Notice::error('No new password was made. Please try again in a few minutes.');
        }

        return Notice::success('The new WordPress password of ' . ($answer['admin_user'] ?? 'your administrator') . ' is '
            . $password . ' — it works within a minute, and the old one no longer does. Keep it somewhere safe: it is shown only this once.');
    }

    private function toggleProxy(): array
    {
        $answer = $this->client->toggleProxy($this->serviceId());

        return Notice::success(!empty($answer['proxy_enabled'])
            ? 'Your site is being put online again.'
            : 'Your site is being taken offline: visitors will not reach it until you turn it on again.');
    }

    /** Paymenter's own status: a service it suspended or cancelled takes no actions from its page. */
    private function serviceIsActive(): bool
    {
        $status = $this->service->status ?? null;

        return !is_string($status) || $status === 'active';
    }

    private function serviceId(): int
    {
        return (int) $this->service->id;
    }

    /** Only an http(s) URL becomes a link: escaping stops markup, not a `javascript:` address. */
    private static function webLink(mixed $url): ?string
    {
        return is_string($url) && preg_match('#^https?://[^\s]+$#i', $url) ? $url : null;
    }

    private static function field(array $input, string $name): string
    {
        return is_string($input[$name] ?? null) ? trim($input[$name]) : '';
    }

    private static function value(array|ApiError $part): ?array
    {
        return is_array($part) ? $part : null;
    }

    private static function error(array|ApiError $part): ?string
    {
        return $part instanceof ApiError ? $part->getMessage() : null;
    }
}
