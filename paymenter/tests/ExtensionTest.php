<?php

namespace ProxmoxWP\Tests;

use App\Attributes\ExtensionMeta;
use App\Models\Service;
use Illuminate\Http\Request;
use Illuminate\Support\Facades\View;
use LogicException;
use Paymenter\Extensions\Servers\ProxmoxWP\ActivityFeed;
use Paymenter\Extensions\Servers\ProxmoxWP\ApiError;
use Paymenter\Extensions\Servers\ProxmoxWP\ClientArea;
use Paymenter\Extensions\Servers\ProxmoxWP\Notice;
use Paymenter\Extensions\Servers\ProxmoxWP\PanelForm;
use Paymenter\Extensions\Servers\ProxmoxWP\ProxmoxWP;
use ReflectionClass;

/** The extension's hooks as Paymenter calls them, against the live API. */
final class ExtensionTest extends PanelTestCase
{
    public function testItIsAPaymenterServerExtensionWithItsSettings(): void
    {
        $meta = (new ReflectionClass(ProxmoxWP::class))->getAttributes(ExtensionMeta::class);
        $this->assertCount(1, $meta);
        $this->assertSame('ProxmoxWP', $meta[0]->newInstance()->name);
        $this->assertTrue(version_compare($meta[0]->newInstance()->version, '1.4.0', '>'), 'the successor of 1.4.0');

        $fields = array_column($this->extension()->getConfig(), null, 'name');
        $this->assertSame(['api_base', 'api_key', 'public_ip', 'job_wait'], array_keys($fields), "1.4.0's three first");
        $this->assertSame('Backend API Base URL', $fields['api_base']['label']);
        $this->assertTrue($fields['api_key']['encrypted']);
        $this->assertTrue($fields['api_base']['required'] && $fields['public_ip']['required']);
        $this->assertSame(['plan'], array_column($this->extension()->getProductConfig(), 'name'));
    }

    public function testBootRegistersTheViewsAndTheFormsRoute(): void
    {
        $this->extension();

        $this->assertTrue(View::exists('proxmoxwp::overview'));
        $route = $this->router->getRoutes()->getByName('extensions.servers.proxmoxwp.panel');
        $this->assertNotNull($route);
        $this->assertSame(['POST'], $route->methods());
        $this->assertSame(['web', 'auth', 'App\\Http\\Middleware\\MustVerfiyEmail', 'can:view,service'], $route->middleware(), "the service page's own");
        $this->assertStringStartsWith(PanelForm::class, $route->getActionName(), 'the invokable controller (@__invoke from Laravel 9 on)');

        $feed = $this->router->getRoutes()->getByName('extensions.servers.proxmoxwp.activity');
        $this->assertSame(['GET', 'HEAD'], $feed->methods());
        $this->assertSame($route->middleware(), $feed->middleware());
        $this->assertStringStartsWith(ActivityFeed::class, $feed->getActionName());
    }

    public function testTheActivityFeedOfAProductWithoutAServerSaysSoInsteadOfFailing(): void
    {
        $this->extension();

        $answer = (new ActivityFeed())(self::newService(withServer: false));

        $this->assertSame(409, $answer->getStatusCode());
        $this->assertSame(['error' => 'This service is not connected to a hosting server.'], $answer->getData(true));
    }

    public function testTheActivityFeedAnswersTheSitesLastJobThroughPaymentersCall(): void
    {
        $extension = $this->extension();
        $service = self::newService();
        $extension->createServer($service, [], []);

        $answer = (new ActivityFeed())($service);

        $this->assertSame(200, $answer->getStatusCode());
        $this->assertFalse($answer->getData(true)['busy']);
        $this->assertSame(['Creating your site', 'succeeded', 'Done.'], [$answer->getData(true)['job']['label'], $answer->getData(true)['job']['state'], $answer->getData(true)['job']['text']]);
    }

    public function testASettingSavedBy140OrBy100IsUsedWithoutSavingTheServerAgain(): void
    {
        $api = ['api_key' => self::env('PROXMOXWP_TEST_API_TOKEN'), 'public_ip' => self::env('PROXMOXWP_TEST_PUBLIC_IP')];
        $of140 = new ProxmoxWP(['api_base' => self::env('PROXMOXWP_TEST_API_URL')] + $api);  // no job_wait either
        $this->assertTrue($of140->testConfig());
        $service = self::newService();
        $data = $of140->createServer($service, [], []);
        $this->assertTrue($data['success']);
        $this->assertSame('active', self::client()->status($service->id)['state']);

        $of100 = new ProxmoxWP(['api_url' => self::env('PROXMOXWP_TEST_API_URL')] + $api);
        $this->assertTrue($of100->testConfig(), "the name this extension's 1.0.0 gave the URL");
    }

    public function testAFormPostedForAProductWithoutAServerSaysSoInsteadOfFailing(): void
    {
        $this->extension();
        $service = self::newService(withServer: false);

        $response = (new PanelForm())(Request::create('/', 'POST', ['action' => 'create_backup']), $service);

        $this->assertSame(ProxmoxWP::overviewUrl($service), $response->getTargetUrl());
        $this->assertSame(Notice::error('This service is not connected to a hosting server. Please contact support.'), Notice::current());
    }

    public function testAFormReachesTheExtensionThroughPaymentersCallWithTheProductsSettings(): void
    {
        $extension = $this->extension();
        $service = self::newService();
        $extension->createServer($service, [], []);

        $response = (new PanelForm())(Request::create('/', 'POST', ['action' => 'create_backup', 'other' => 'ignored']), $service);

        $this->assertSame(ProxmoxWP::overviewUrl($service), $response->getTargetUrl());
        $this->assertSame('success', Notice::current()['type'], json_encode(Notice::current()));
        $this->assertSame('mkbak', self::client()->jobs($service->id)[0]['kind']);
    }

    public function testTestConfigAcceptsTheRightKeyAndExplainsTheRest(): void
    {
        $this->assertTrue($this->extension()->testConfig());

        $wrongKey = $this->extension(['api_key' => 'not-the-key-0123456789'])->testConfig();
        $this->assertIsString($wrongKey);
        $this->assertStringNotContainsString('not-the-key', $wrongKey);

        $down = $this->extension(['api_base' => 'http://127.0.0.1:' . self::closedPort()])->testConfig();
        $this->assertSame('The hosting API could not be reached. Please try again in a few minutes.', $down);

        $notOurs = $this->extension(['api_base' => self::env('PROXMOXWP_TEST_API_URL') . '/jobs'])->testConfig();
        $this->assertIsString($notOurs);
    }

    public function testCreateServerWaitsForTheSiteAndReturnsWhatTheWelcomeEmailShows(): void
    {
        $service = self::newService('Basic');
        $data = $this->extension()->createServer($service, ['plan' => ''], []);

        $this->assertSame(['site_url', 'admin_url', 'admin_user', 'admin_password', 'subdomain', 'success', 'data'], array_keys($data));
        $this->assertSame($data['site_url'] . 'wp-admin/', $data['admin_url']);
        $this->assertTrue($data['success'], "1.4.0's keys too: success, and data, the API's answer");
        $this->assertSame([$data['subdomain'], $data['admin_password']], [$data['data']['subdomain'], $data['data']['admin_password']]);
        $status = self::client()->status($service->id);
        $this->assertSame('active', $status['state'], 'the job was followed to its end');
        $this->assertSame('basic', $status['plan'], "the product's name, in lower case");

        $premium = self::newService('WordPress Pro');
        $this->extension()->createServer($premium, ['plan' => 'premium'], []);
        $this->assertSame('premium', self::client()->status($premium->id)['plan'], "the product's plan setting first");
    }

    public function testCreateServerThrowsWhenTheApiRefuses(): void
    {
        $this->expectException(ApiError::class);
        $this->expectExceptionMessageMatches('/plan/');

        $this->extension()->createServer(self::newService('Gold Unlimited'), [], []);
    }

    public function testCreateServerThrowsWhenTheSitesJobFails(): void
    {
        $failure = self::env('PROXMOXWP_TEST_CONTROL_DIR') . '/fail-site_create';
        file_put_contents($failure, 'The cluster has no room for another container.');
        try {
            $this->extension()->createServer(self::newService(), [], []);
            $this->fail('createServer returned although the job failed');
        } catch (ApiError $error) {
            $this->assertStringContainsString('The cluster has no room for another container.', $error->getMessage());
        } finally {
            unlink($failure);
        }
    }

    public function testASlowSiteIsLeftToFinishAtTheHooksBoundAndTheEmailStillGetsItsPassword(): void
    {
        $control = self::env('PROXMOXWP_TEST_CONTROL_DIR');
        touch("{$control}/block-site_create");
        try {
            $service = self::newService();
            $started = microtime(true);
            $data = $this->extension(['job_wait' => 2])->createServer($service, [], []);
            $took = microtime(true) - $started;
            $this->assertLessThan(3.5, $took, 'the hook returns at its bound (2 s), not at the end of the job');
            $this->assertNotEmpty($data['admin_password']);
            $this->assertSame('provisioning', self::client()->status($service->id)['state']);
        } finally {
            touch("{$control}/release-site_create");
            unlink("{$control}/block-site_create");
        }
        $this->awaitState($service->id, 'active');
        unlink("{$control}/release-site_create");
    }

    public function testSuspendUnsuspendAndUpgradeChangeTheSite(): void
    {
        $service = self::newService();
        $extension = $this->extension();
        $extension->createServer($service, [], []);

        $this->assertTrue($extension->suspendServer($service, [], []));
        $this->awaitState($service->id, 'suspended');
        $this->assertTrue($extension->unsuspendServer($service, [], []));
        $this->awaitState($service->id, 'active');
        $this->assertTrue($extension->upgradeServer($service, ['plan' => 'premium'], []));
        $this->assertSame('premium', self::client()->status($service->id)['plan']);

        $this->expectException(ApiError::class);
        $extension->upgradeServer($service, ['plan' => 'no-such-plan'], []);
    }

    public function testTerminateDeletesTheSite(): void
    {
        $service = self::newService();
        $extension = $this->extension();
        $extension->createServer($service, [], []);

        $this->assertTrue($extension->terminateServer($service, [], []));
        $this->awaitState($service->id, 'deleted');
    }

    public function testTerminateDoesNotBlockOnABackendErrorButLogsIt(): void
    {
        $service = self::newService();
        $extension = $this->extension(['api_base' => 'http://127.0.0.1:' . self::closedPort(), 'api_key' => 'secret-key-that-must-not-be-logged']);

        $this->assertFalse($extension->terminateServer($service, [], []));
        $records = $this->log->getRecords();
        $this->assertCount(1, $records);
        $this->assertSame('ERROR', $records[0]['level_name']);
        $this->assertStringContainsString("service {$service->id}", $records[0]['message']);
        $this->assertStringNotContainsString('secret-key', json_encode($records));
    }

    public function testActionsAreTheOverviewAndFourButtonsThatExist(): void
    {
        $extension = $this->extension();
        $actions = $extension->getActions(self::newService());

        $this->assertSame([['type' => 'view', 'name' => 'overview', 'label' => 'Overview', 'function' => 'getView']], array_values(array_filter($actions, fn ($a) => $a['type'] === 'view')));
        $buttons = array_values(array_filter($actions, fn ($a) => $a['type'] === 'button'));
        $this->assertSame(['Log in to WordPress', 'Start', 'Stop', 'Restart', 'Reset'], array_column($buttons, 'label'));
        foreach ($buttons as $button) {
            $this->assertTrue(method_exists($extension, $button['function']), $button['function']);
        }
    }

    public function testPowerButtonsActAndComeBackToTheOverviewWithANotice(): void
    {
        $service = self::newService();
        $extension = $this->extension();
        $extension->createServer($service, [], []);
        $overview = "https://panel.example.test/services/{$service->id}?tab=overview";

        $this->assertSame($overview, $extension->stopSite($service, [], []));
        $this->assertSame(Notice::success('Your site is stopping.'), $this->session->get(Notice::SESSION_KEY));
        $this->awaitState($service->id, 'stopped');

        $this->assertSame($overview, $extension->startSite($service, [], []));
        $this->awaitState($service->id, 'active');
        $this->assertSame($overview, $extension->restartSite($service, [], []));
        $this->assertSame(Notice::success('Your site is restarting.'), $this->session->get(Notice::SESSION_KEY));
    }

    public function testLogInToWordPressSendsTheBrowserToTheApisSingleUseLink(): void
    {
        $service = self::newService();
        $extension = $this->extension();
        $created = $extension->createServer($service, [], []);
        $jobs = self::client()->jobs($service->id);

        $link = $extension->loginToWordPress($service, [], []);
        $again = $extension->loginToWordPress($service, [], []);
        $this->assertStringStartsWith("https://{$created['subdomain']}/wp-login.php?action=proxmoxwp-login&token=", $link);
        $this->assertNotSame($link, $again, 'each click gets a link of its own');
        parse_str((string) parse_url($link, PHP_URL_QUERY), $query);
        [$claims] = explode('.', $query['token']);
        $claims = json_decode(base64_decode(strtr($claims, '-_', '+/')), true);
        $this->assertSame($created['admin_user'], $claims['u']);
        $this->assertEqualsWithDelta(time() + 60, $claims['e'], 5, 'good for the API\'s lifetime, a minute');
        $this->assertNull($this->session->get(Notice::SESSION_KEY));
        $this->assertSame($jobs, self::client()->jobs($service->id), 'a link is answered at once, by no job');
    }

    public function testLogInToAStoppedSiteComesBackToTheOverviewWithTheReason(): void
    {
        $service = self::newService();
        $extension = $this->extension();
        $extension->createServer($service, [], []);
        $extension->stopSite($service, [], []);
        $this->awaitState($service->id, 'stopped');

        $this->assertSame("https://panel.example.test/services/{$service->id}?tab=overview", $extension->loginToWordPress($service, [], []));
        $this->assertSame(Notice::error('This site is not running (it is stopped); start it first to log in to WordPress.'), $this->session->get(Notice::SESSION_KEY));
    }

    public function testANewAdminPasswordIsShownOnceAndSetByTheSitesJob(): void
    {
        $service = self::newService();
        $extension = $this->extension();
        $created = $extension->createServer($service, [], []);

        $notice = $extension->handlePanelForm($service, [], [], ['action' => 'new_password']);
        $this->assertSame('success', $notice['type']);
        $this->assertMatchesRegularExpression('/^The new WordPress password of ' . preg_quote($created['admin_user'], '/') . ' is (\S{20,}) — it works within a minute/', $notice['message']);
        preg_match('/ is (\S+) — /', $notice['message'], $found);
        $this->assertNotSame($created['admin_password'], $found[1]);
        $job = self::client()->jobs($service->id)[0];
        $this->assertSame('admin_password', $job['kind']);
        $this->assertStringNotContainsString($found[1], json_encode($job), 'the job record holds no password');
        $this->awaitIdle($service->id);
        $this->assertSame('succeeded', self::client()->jobs($service->id)[0]['state']);
    }

    public function testResetAsksForAConfirmationBeforeItErasesTheSite(): void
    {
        $service = self::newService();
        $extension = $this->extension();
        $extension->createServer($service, [], []);
        $before = self::client()->jobs($service->id);

        $extension->resetSite($service, [], []);
        $this->assertTrue($this->session->get(Notice::CONFIRM_KEY));
        $this->assertSame($before, self::client()->jobs($service->id), 'no job yet');

        $notice = $extension->handlePanelForm($service, [], [], ['action' => 'reset']);
        $this->assertSame(Notice::success('Your site is being reset to its freshly installed state.'), $notice);
        $job = self::client()->jobs($service->id)[0];
        $this->assertSame('power', $job['kind']);
        $this->assertSame('reset', $job['params']['power_action']);
    }

    public function testAButtonCatchesItsOwnError(): void
    {
        $service = self::newService();
        $extension = $this->extension(['api_base' => 'http://127.0.0.1:' . self::closedPort()]);

        $this->assertSame("https://panel.example.test/services/{$service->id}?tab=overview", $extension->startSite($service, [], []));
        $this->assertSame(Notice::error('The hosting API could not be reached. Please try again in a few minutes.'), $this->session->get(Notice::SESSION_KEY));
    }

    public function testAnUnexpectedFailureIsLoggedAndTheCustomerReadsAPlainSentence(): void
    {
        $service = self::newService();
        $extension = new class(['api_base' => 'http://127.0.0.1:1', 'api_key' => 'k']) extends ProxmoxWP {
            public function clientArea(Service $service): ClientArea
            {
                throw new LogicException('internal detail: connection string postgres://wp:hunter2@db');
            }
        };
        $plain = Notice::error('Something went wrong on our side. Please try again in a few minutes.');

        $this->assertSame("https://panel.example.test/services/{$service->id}?tab=overview", $extension->stopSite($service, [], []));
        $this->assertSame($plain, $this->session->get(Notice::SESSION_KEY));
        $this->assertSame($plain, $extension->handlePanelForm($service, [], [], ['action' => 'create_backup']));
        $this->assertCount(2, $this->log->getRecords());
        $this->assertStringContainsString('LogicException: internal detail', $this->log->getRecords()[0]['message']);
    }

    public function testTheOverviewsFormsActAndAnswerANotice(): void
    {
        $service = self::newService();
        $extension = $this->extension();
        $extension->createServer($service, [], []);
        $form = fn (array $input) => $extension->handlePanelForm($service, [], [], $input);

        $made = $form(['action' => 'create_backup']);
        $this->assertSame('success', $made['type']);
        $this->assertMatchesRegularExpression('/^Backup BAK\d{8}-1 is being made\.$/', $made['message']);
        $this->awaitIdle($service->id);
        $backup = self::client()->backups($service->id)['backups'][0]['name'];
        $this->assertSame(Notice::success("Your site is being restored to backup {$backup}."), $form(['action' => 'restore_backup', 'bak' => $backup]));
        $this->awaitIdle($service->id);
        $this->assertSame(Notice::success("Backup {$backup} is being deleted."), $form(['action' => 'delete_backup', 'bak' => $backup]));

        $domain = self::pointingDomain();
        $this->assertSame('success', $form(['action' => 'add_domain', 'domain' => " {$domain} "])['type']);
        $this->awaitIdle($service->id);
        $this->assertSame([$domain], array_column(self::client()->domains($service->id)['domains'], 'domain'));
        $this->assertSame(Notice::success("{$domain} is being removed from your site."), $form(['action' => 'remove_domain', 'domain' => $domain]));

        $this->assertSame(Notice::success('Your site is being taken offline: visitors will not reach it until you turn it on again.'), $form(['action' => 'toggle_proxy']));
        $this->assertSame(Notice::success('Your site is being put online again.'), $form(['action' => 'toggle_proxy']));
    }

    public function testBadFormInputGetsAnErrorAndChangesNothing(): void
    {
        $service = self::newService();
        $extension = $this->extension();
        $extension->createServer($service, [], []);
        $jobs = self::client()->jobs($service->id);
        $form = fn (array $input) => $extension->handlePanelForm($service, [], [], $input);

        $this->assertSame(Notice::error('That action is not available.'), $form(['action' => 'drop_database']));
        $this->assertSame(Notice::error('That action is not available.'), $form([]));
        $this->assertSame(Notice::error('Choose a backup to delete.'), $form(['action' => 'delete_backup', 'bak' => '../../etc']));
        $this->assertSame(Notice::error('Choose a backup to restore.'), $form(['action' => 'restore_backup', 'bak' => ['BAK01012026-1']]));
        $this->assertSame(Notice::error('Enter a domain name, such as www.example.com.'), $form(['action' => 'add_domain', 'domain' => '  ']));
        $elsewhere = $form(['action' => 'add_domain', 'domain' => self::env('PROXMOXWP_TEST_DOMAIN_ELSEWHERE')]);
        $this->assertSame('error', $elsewhere['type']);
        $this->assertStringContainsString(self::env('PROXMOXWP_TEST_PUBLIC_IP'), $elsewhere['message']);
        $unknown = $form(['action' => 'delete_backup', 'bak' => 'BAK01012020-1']);
        $this->assertSame('error', $unknown['type']);

        $suspendedInPaymenter = self::newService('Basic', 'suspended');
        $this->assertSame(Notice::error('This service is not active, so its site cannot be changed.'), $extension->handlePanelForm($suspendedInPaymenter, [], [], ['action' => 'create_backup']));

        $this->assertSame($jobs, self::client()->jobs($service->id), 'no job was started');
        $this->assertSame([], self::client()->domains($service->id)['domains']);
    }

    private function awaitState(int $serviceId, string $state): void
    {
        self::waitUntil(fn () => self::client()->status($serviceId)['state'] === $state ? true : null, 60, "the site to be {$state}");
    }

    /** Wait until none of the service's jobs is queued or running. */
    private function awaitIdle(int $serviceId): void
    {
        $busy = fn () => array_filter(self::client()->jobs($serviceId), fn (array $job) => in_array($job['state'], ['queued', 'running'], true));
        self::waitUntil(fn () => $busy() === [] ? true : null, 60, "the jobs of service {$serviceId} to finish");
    }
}
