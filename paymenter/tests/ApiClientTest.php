<?php

namespace ProxmoxWP\Tests;

use Paymenter\Extensions\Servers\ProxmoxWP\ApiClient;
use Paymenter\Extensions\Servers\ProxmoxWP\ApiError;

/** The client against the live API: real HTTP, the real token, every endpoint, and readable errors. */
final class ApiClientTest extends PanelTestCase
{
    public function testTheWholeLifeOfASiteThroughEveryEndpoint(): void
    {
        $api = self::client();
        $id = self::newService()->id;
        $api->check();

        $created = $api->createSite($id, 'owner@example.com', 'basic', self::env('PROXMOXWP_TEST_PUBLIC_IP'));
        $this->assertTrue($created['success']);
        $this->assertSame('provisioning', $created['state']);
        $this->assertStringStartsWith('https://', $created['site_url']);
        $this->assertSame($created['site_url'] . 'wp-admin/', $created['admin_url']);
        $this->assertNotEmpty($created['admin_user']);
        $this->assertGreaterThanOrEqual(16, strlen($created['admin_password']));
        self::awaitJob($api, $created);

        $status = $api->status($id);
        $this->assertSame('active', $status['state']);
        $this->assertSame('basic', $status['plan']);
        $this->assertSame($created['subdomain'], $status['subdomain']);
        $this->assertTrue($status['proxy_enabled']);

        // backups: make, list, restore, delete
        $backup = $api->createBackup($id);
        $this->assertMatchesRegularExpression('/^BAK\d{8}-1$/', $backup['bak']);
        self::awaitJob($api, $backup);
        $this->assertSame([$backup['bak']], array_column($api->backups($id)['backups'], 'name'));
        self::awaitJob($api, $api->restoreBackup($id, $backup['bak']));
        self::awaitJob($api, $api->deleteBackup($id, $backup['bak']));
        $listed = $api->backups($id);
        $this->assertSame([], $listed['backups']);
        $this->assertSame(0, $listed['quota']['used']);

        // a domain of the customer's own
        $domain = self::pointingDomain();
        $attached = $api->addDomain($id, strtoupper($domain));
        $this->assertSame($domain, $attached['domain']);
        self::awaitJob($api, $attached);
        $domains = $api->domains($id);
        $this->assertSame([$domain], array_column($domains['domains'], 'domain'));
        $this->assertSame(['active'], array_column($domains['domains'], 'state'));
        $this->assertSame(1, $domains['quota']['used']);
        self::awaitJob($api, $api->removeDomain($id, $domain));
        $this->assertSame([], $api->domains($id)['domains']);

        // the proxy switch answers the new state
        $off = $api->toggleProxy($id);
        $this->assertFalse($off['proxy_enabled']);
        self::awaitJob($api, $off);
        $on = $api->toggleProxy($id);
        $this->assertTrue($on['proxy_enabled']);
        self::awaitJob($api, $on);

        foreach (['stop' => 'stopped', 'start' => 'active', 'restart' => 'active', 'reset' => 'active'] as $action => $state) {
            self::awaitJob($api, $api->power($id, $action, 'active'));
            $this->assertSame($state, $api->status($id)['state'], $action);
        }

        self::awaitJob($api, $api->suspendSite($id));
        $this->assertSame('suspended', $api->status($id)['state']);
        self::awaitJob($api, $api->unsuspendSite($id));
        self::awaitJob($api, $api->upgradeSite($id, 'premium'));
        $this->assertSame('premium', $api->status($id)['plan']);

        self::awaitJob($api, $api->deleteSite($id));
        $this->assertSame('deleted', $api->status($id)['state']);
        $this->assertTrue($api->deleteSite($id)['success'], 'deleting a deleted site succeeds');
    }

    public function testRefusalsReadAsTheApisSentence(): void
    {
        $api = self::client();
        $id = self::newService()->id;

        $unknown = $this->refusal(fn () => $api->domains($id));
        $this->assertSame(404, $unknown->status);
        $this->assertReadable($unknown);

        self::awaitJob($api, $api->createSite($id, 'owner@example.com', 'basic', self::env('PROXMOXWP_TEST_PUBLIC_IP')));

        $badDomain = $this->refusal(fn () => $api->addDomain($id, 'not a domain'));
        $this->assertSame(400, $badDomain->status);
        $this->assertReadable($badDomain);

        $elsewhere = $this->refusal(fn () => $api->addDomain($id, self::env('PROXMOXWP_TEST_DOMAIN_ELSEWHERE')));
        $this->assertSame(422, $elsewhere->status);
        $this->assertSame('dns_not_pointing', $elsewhere->reason);
        $this->assertStringContainsString(self::env('PROXMOXWP_TEST_PUBLIC_IP'), $elsewhere->getMessage(), 'the sentence says what to create');
        $this->assertReadable($elsewhere);

        $noBackup = $this->refusal(fn () => $api->restoreBackup($id, 'BAK01012020-1'));
        $this->assertSame(404, $noBackup->status);
        $this->assertReadable($noBackup);

        self::awaitJob($api, $api->suspendSite($id));
        $suspended = $this->refusal(fn () => $api->power($id, 'start'));
        $this->assertSame(409, $suspended->status);
        $this->assertSame('suspended', $suspended->reason);
        $this->assertReadable($suspended);

        $plan = $this->refusal(fn () => $api->createSite(self::newService()->id, 'owner@example.com', 'no-such-plan', self::env('PROXMOXWP_TEST_PUBLIC_IP')));
        $this->assertSame(400, $plan->status);
        $this->assertStringContainsString('plan', $plan->getMessage());
    }

    public function testAWrongKeyIsRefusedWithoutEchoingIt(): void
    {
        $error = $this->refusal(fn () => self::client('wrong-key-0123456789')->check());

        $this->assertSame(401, $error->status);
        $this->assertReadable($error);
        $this->assertStringNotContainsString('wrong-key', $error->getMessage());
    }

    public function testAnApiThatIsDownGivesASentenceWithoutAddressOrKey(): void
    {
        $port = self::closedPort();
        $error = $this->refusal(fn () => self::client(null, "http://127.0.0.1:{$port}")->status(1));

        $this->assertTrue($error->unreachable());
        $this->assertSame('The hosting API could not be reached. Please try again in a few minutes.', $error->getMessage());
    }

    private function refusal(callable $call): ApiError
    {
        try {
            $call();
        } catch (ApiError $error) {
            return $error;
        }
        $this->fail('the call was expected to fail');
    }

    private function assertReadable(ApiError $error): void
    {
        $text = $error->getMessage();
        $this->assertNotSame('', $text);
        $this->assertDoesNotMatchRegularExpression('/<[a-z\/!]|^API |HTTP \d{3}|https?:\/\/|\{"/i', $text, 'no markup, prefix, status line, URL or JSON');
        $this->assertStringNotContainsString(self::env('PROXMOXWP_TEST_API_TOKEN'), $text);
    }
}
