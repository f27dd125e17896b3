<?php

namespace Paymenter\Extensions\Servers\ProxmoxWP;

/**
 * What the Overview says is happening to the site, from the API's /status: its `last_job` is the job the customer
 * started last, running or finished (the API records it as soon as a worker takes it up), with its progress or its
 * result; `heading_to` says a change is still waiting to start. The same array fills the page and the JSON the page
 * asks for every few seconds while something happens (ActivityFeed).
 *
 * Progress is the API's: `done` tasks of `total`, where the total is what the same operation took the last time it
 * succeeded; while it is not known (the first run of an operation, or one that went past it) only `done` is shown.
 */
final class Activity
{
    private const LABELS = [
        'create' => 'Creating your site',
        'delete' => 'Deleting your site',
        'suspend' => 'Suspending your site',
        'unsuspend' => 'Bringing your site back',
        'upgrade' => 'Moving your site to its new plan',
        'mkbak' => 'Making a backup',
        'delbak' => 'Deleting a backup',
        'rollback' => 'Restoring a backup',
        'domain_add' => 'Attaching a domain',
        'domain_remove' => 'Removing a domain',
        'toggle' => 'Switching who may visit your site',
        'admin_password' => 'Setting the new admin password',
    ];

    private const POWER_LABELS = [
        'start' => 'Starting your site',
        'stop' => 'Stopping your site',
        'restart' => 'Restarting your site',
        'reset' => 'Resetting your site',
    ];

    private const UNFINISHED = ['queued', 'running'];

    /** @return array{busy: bool, state: ?string, heading_to: ?string, job: ?array} */
    public static function of(array $status): array
    {
        $job = is_array($status['last_job'] ?? null) ? self::job($status['last_job']) : null;
        $headingTo = is_string($status['heading_to'] ?? null) ? $status['heading_to'] : null;
        $running = $job !== null && in_array($job['state'], self::UNFINISHED, true);
        if ($headingTo !== null && !$running) {
            // the change asked for is queued behind nothing the customer started: it starts in a moment
            $job = ['id' => 0, 'label' => 'Changing your site', 'state' => 'queued', 'done' => 0, 'total' => null, 'text' => 'Waiting to start.'];
        }

        return [
            'busy' => $running || $headingTo !== null,
            'state' => is_string($status['state'] ?? null) ? $status['state'] : null,
            'heading_to' => $headingTo,
            'job' => $job,
        ];
    }

    private static function job(array $job): array
    {
        $state = (string) ($job['state'] ?? '');
        $done = max(0, (int) ($job['progress']['done'] ?? 0));
        $total = isset($job['progress']['total']) ? (int) $job['progress']['total'] : null;
        if ($total !== null && ($total <= 0 || $done > $total)) {
            $total = null;  // the API never says so; a page that shows it anyway would be wrong
        }

        return [
            'id' => (int) ($job['id'] ?? 0),
            'label' => self::label($job),
            'state' => $state,
            'done' => $done,
            'total' => $total,
            'text' => self::text($state, $done, $total, $job['message'] ?? null),
        ];
    }

    private static function label(array $job): string
    {
        $kind = (string) ($job['kind'] ?? '');
        if ($kind === 'power') {
            return self::POWER_LABELS[$job['params']['power_action'] ?? ''] ?? 'Changing your site';
        }

        return self::LABELS[$kind] ?? 'Changing your site';
    }

    private static function text(string $state, int $done, ?int $total, mixed $message): string
    {
        return match ($state) {
            'queued' => 'Waiting to start.',
            'running' => $total !== null ? "Step {$done} of {$total}." : ($done === 1 ? '1 step done.' : "{$done} steps done."),
            'succeeded' => 'Done.',
            'cancelled' => 'Cancelled.',
            'failed' => 'It did not work: ' . ErrorText::clean(is_string($message) && $message !== '' ? $message : 'the job failed.'),
            default => '',
        };
    }
}
