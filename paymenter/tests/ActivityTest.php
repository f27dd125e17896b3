<?php

namespace ProxmoxWP\Tests;

use Paymenter\Extensions\Servers\ProxmoxWP\Activity;
use PHPUnit\Framework\TestCase;

/** What the Overview says is happening, from the API's /status, as the page and its JSON feed show it. */
final class ActivityTest extends TestCase
{
    private static function status(?array $lastJob, ?string $headingTo = null): array
    {
        return ['state' => 'active', 'heading_to' => $headingTo, 'last_job' => $lastJob];
    }

    private static function job(string $state, int $done, ?int $total, array $extra = []): array
    {
        return $extra + ['id' => 7, 'kind' => 'mkbak', 'state' => $state, 'params' => [], 'progress' => ['done' => $done, 'total' => $total], 'message' => null];
    }

    public function testARunningJobShowsItsStepOfTheTotalTheApiKnows(): void
    {
        $activity = Activity::of(self::status(self::job('running', 3, 5)));

        $this->assertTrue($activity['busy']);
        $this->assertSame(['id' => 7, 'label' => 'Making a backup', 'state' => 'running', 'done' => 3, 'total' => 5, 'text' => 'Step 3 of 5.'], $activity['job']);
    }

    public function testWithoutAKnownTotalOnlyTheStepsDoneAreShown(): void
    {
        $this->assertSame('4 steps done.', Activity::of(self::status(self::job('running', 4, null)))['job']['text']);
        $this->assertSame('1 step done.', Activity::of(self::status(self::job('running', 1, null)))['job']['text']);
        // a total below what is done is never shown, whoever sent it
        $this->assertNull(Activity::of(self::status(self::job('running', 58, 13)))['job']['total']);
    }

    public function testAFinishedJobShowsItsResultAndNothingIsBusy(): void
    {
        $done = Activity::of(self::status(self::job('succeeded', 5, 5)));
        $this->assertFalse($done['busy']);
        $this->assertSame('Done.', $done['job']['text']);

        $failed = Activity::of(self::status(self::job('failed', 2, 5, ['message' => 'API POST /x failed: HTTP 409: <b>No room</b> on any node'])));
        $this->assertSame('It did not work: No room on any node', $failed['job']['text']);
    }

    public function testAChangeWaitingBehindNothingIsShownAsWaiting(): void
    {
        $activity = Activity::of(self::status(self::job('succeeded', 5, 5), 'stopped'));

        $this->assertTrue($activity['busy']);
        $this->assertSame('Waiting to start.', $activity['job']['text']);
    }

    public function testPowerJobsAreNamedByWhatTheyDo(): void
    {
        $job = self::job('queued', 0, null, ['kind' => 'power', 'params' => ['power_action' => 'restart']]);

        $this->assertSame('Restarting your site', Activity::of(self::status($job))['job']['label']);
        $this->assertNull(Activity::of(self::status(null))['job']);
    }
}
