<?php

namespace ProxmoxWP\Tests;

use App\Models\Service;
use Illuminate\Http\Client\Factory;
use Illuminate\Http\Client\Request;
use Paymenter\Extensions\Servers\ProxmoxWP\ApiClient;
use Paymenter\Extensions\Servers\ProxmoxWP\ClientArea;
use Paymenter\Extensions\Servers\ProxmoxWP\Notice;
use Paymenter\Extensions\Servers\ProxmoxWP\ProxmoxWP;

/** The Overview as a customer sees it: Paymenter prints it as it is, so whatever it shows must be escaped. */
final class OverviewTest extends PanelTestCase
{
    private const HOSTILE = '<script>alert(1)</script>';

    public function testItShowsTheSiteItsDomainsAndBackupsWithTheirForms(): void
    {
        $service = self::newService();
        $extension = $this->extension();
        $created = $extension->createServer($service, [], []);
        $api = self::client();
        $domain = self::pointingDomain('www');
        self::awaitJob($api, $api->addDomain($service->id, $domain));
        $backup = $api->createBackup($service->id);
        self::awaitJob($api, $backup);

        $page = $extension->getView($service, [], [], ProxmoxWP::VIEW);

        $this->assertStringContainsString('>' . $created['subdomain'] . '</a>', $page);
        $this->assertStringContainsString('href="' . $created['site_url'] . '"', $page);
        $this->assertMatchesRegularExpression('/data-state="active">\s*Active/', $page);
        $this->assertStringContainsString("data-domain=\"{$domain}\"", $page);
        $this->assertStringContainsString("data-backup=\"{$backup['bak']}\"", $page);
        $this->assertMatchesRegularExpression('/1 of \d+ used/', $page);
        $this->assertStringNotContainsString('role="alert"', $page);
        $this->assertMatchesRegularExpression('/Last change<\/h3>\s*<p><span data-activity-label>Making a backup<\/span>: <span data-activity-text data-job-state="succeeded">Done\.<\/span>/', $page);
        $action = "action=\"https://panel.example.test/extensions/proxmoxwp/services/{$service->id}\"";
        $room = fn (array $list) => $list['quota']['available'] > 0 ? 1 : 0;  // the add and make forms show while there is room
        $forms = 1 + 1 + 1 + 2 + $room($api->domains($service->id)) + $room($api->backups($service->id));  // new password, toggle, remove, restore and delete
        $this->assertSame($forms, substr_count($page, $action));
        $this->assertSame($forms, substr_count($page, 'name="_token" value="' . $this->session->token() . '"'), 'every form carries the CSRF token');
    }

    public function testTheNoticeOfAnActionShowsOnceOnTheNextPage(): void
    {
        $service = self::newService();
        $extension = $this->extension();
        $extension->createServer($service, [], []);
        Notice::flash($extension->handlePanelForm($service, [], [], ['action' => 'create_backup']));
        $this->nextRequest();

        $page = $extension->getView($service, [], [], ProxmoxWP::VIEW);
        $this->assertMatchesRegularExpression('/role="status"[^>]*>\s*Backup BAK\d{8}-1 is being made\./', $page);

        $this->nextRequest();
        $this->assertStringNotContainsString('role="status"', $extension->getView($service, [], [], ProxmoxWP::VIEW));
    }

    public function testABackendThatIsDownLeavesThePageRenderingWithAnErrorNotice(): void
    {
        $service = self::newService();
        $page = $this->extension(['api_base' => 'http://127.0.0.1:' . self::closedPort()])->getView($service, [], [], ProxmoxWP::VIEW);

        $this->assertSame(3, substr_count($page, '<p class="proxmoxwp-error text-error" role="alert">The hosting API could not be reached. Please try again in a few minutes.</p>'));
        foreach (['Your site', 'Your domains', 'Your backups'] as $heading) {
            $this->assertStringContainsString($heading, $page);
        }
    }

    public function testHostileValuesAreShownEscaped(): void
    {
        $http = new Factory();
        $http->fake([
            '*/status*' => $http->response($this->status(['subdomain' => self::HOSTILE, 'site_url' => 'javascript:alert(1)//"onmouseover="x', 'plan' => self::HOSTILE, 'failure_reason' => self::HOSTILE, 'state' => 'failed',
                'last_job' => ['id' => 3, 'kind' => self::HOSTILE, 'state' => 'failed', 'params' => ['power_action' => self::HOSTILE], 'progress' => ['done' => 1, 'total' => null], 'message' => self::HOSTILE]])),
            '*/action/getdomain*' => $http->response(['success' => true, 'service_id' => 1, 'quota' => ['limit' => 3, 'used' => 1, 'available' => 2], 'domains' => [
                ['domain' => '"><img src=x onerror=alert(1)>', 'domain_unicode' => self::HOSTILE, 'state' => 'ssl_error', 'message' => self::HOSTILE, 'created_at' => '2026-11-27T08:00:00Z'],
            ]]),
            '*/action/getbak*' => $http->response('<html><body><p>&lt;script&gt;alert(2)&lt;/script&gt; upstream broke</p></body></html>', 502),
        ]);
        Notice::flash(Notice::error(self::HOSTILE));
        $this->extension();

        $page = (new ClientArea(new ApiClient('http://api.test', 'key', $http), self::newService()))->render();

        $this->assertSame(1, substr_count($page, '<script'), "the Overview's own script, which follows the activity, and no other");
        $this->assertStringNotContainsString('<img', $page);
        $this->assertStringNotContainsString('"onmouseover=', $page);
        $this->assertStringNotContainsString('javascript:', $page, 'an address that is not http(s) is no link');
        $this->assertStringContainsString('&lt;script&gt;alert(1)&lt;/script&gt;', $page);
        $this->assertStringContainsString('&lt;script&gt;alert(2)&lt;/script&gt; upstream broke', $page, 'the HTML page\'s paragraph, decoded once and escaped');
    }

    public function testOneFailingPartShowsItsErrorAndTheRestRenders(): void
    {
        $http = new Factory();
        $http->fake([
            '*/status*' => $http->response($this->status()),
            '*/action/getdomain*' => $http->response(['success' => false, 'error' => 'API GET /action/getdomain failed: HTTP 503: The domain service is down.', 'code' => 'unavailable'], 503),
            '*/action/getbak*' => $http->response(['success' => true, 'service_id' => 1, 'quota' => ['limit' => 2, 'used' => 0, 'available' => 2], 'backups' => []]),
        ]);
        $this->extension();

        $page = (new ClientArea(new ApiClient('http://api.test', 'key', $http), self::newService()))->render();

        $this->assertStringContainsString('role="alert">The domain service is down.</p>', $page);
        $this->assertSame(1, substr_count($page, 'role="alert"'));
        $this->assertStringContainsString('site-1.sites.example.net', $page);
        $this->assertStringContainsString('No backup yet.', $page);
    }

    public function testOnePageRenderMakesThreeCallsAtOnce(): void
    {
        $http = new Factory();
        $http->fake([
            '*/status*' => $http->response($this->status()),
            '*/action/getdomain*' => $http->response(['success' => true, 'service_id' => 1, 'quota' => ['limit' => 1, 'used' => 0, 'available' => 1], 'domains' => []]),
            '*/action/getbak*' => $http->response(['success' => true, 'service_id' => 1, 'quota' => ['limit' => 1, 'used' => 0, 'available' => 1], 'backups' => []]),
        ]);
        $this->extension();

        (new ClientArea(new ApiClient('http://api.test/', 'the-key', $http), new Service(42)))->render();

        $calls = array_map(fn (array $pair) => $pair[0], $http->recorded()->all());
        $this->assertSame(
            ['GET http://api.test/status?service_id=42', 'GET http://api.test/action/getdomain?service_id=42', 'GET http://api.test/action/getbak?service_id=42'],
            array_map(fn (Request $request) => $request->method() . ' ' . $request->url(), $calls),
        );
        foreach ($calls as $request) {
            $this->assertSame(['Bearer the-key'], $request->header('Authorization'));
        }
    }

    private function status(array $values = []): array
    {
        return $values + [
            'success' => true, 'service_id' => 1, 'subdomain' => 'site-1.sites.example.net', 'site_url' => 'https://site-1.sites.example.net/',
            'state' => 'active', 'heading_to' => null, 'failure_reason' => null, 'plan' => 'basic', 'email' => 'owner@example.com',
            'vmid' => 100, 'node' => 'pve1', 'ip' => '10.0.0.2', 'proxy_enabled' => true, 'quotas' => [], 'last_job' => null,
        ];
    }
}
