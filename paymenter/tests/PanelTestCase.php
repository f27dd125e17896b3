<?php

namespace ProxmoxWP\Tests;

use App\Helpers\ExtensionHelper;
use App\Models\Service;
use Illuminate\Routing\Router;
use Illuminate\Session\Store;
use Monolog\Handler\TestHandler;
use Paymenter\Extensions\Servers\ProxmoxWP\ApiClient;
use Paymenter\Extensions\Servers\ProxmoxWP\ProxmoxWP;
use PHPUnit\Framework\TestCase;

/**
 * Each test runs in a fresh PaymenterRuntime (what Paymenter gives an extension). The live API's address and token
 * come from the environment that tests/test_paymenter.py sets.
 */
abstract class PanelTestCase extends TestCase
{
    protected PaymenterRuntime $runtime;

    protected Store $session;

    protected Router $router;

    protected TestHandler $log;

    protected function setUp(): void
    {
        $this->runtime = PaymenterRuntime::start();
        $this->session = $this->runtime->session;
        $this->router = $this->runtime->router;
        $this->log = $this->runtime->log;
    }

    protected function tearDown(): void
    {
        ExtensionHelper::$extension = null;
        ExtensionHelper::$reported = [];
        $this->runtime->stop();
    }

    /** The extension as Paymenter builds it from the server's settings, booted as on every request. */
    protected function extension(array $config = []): ProxmoxWP
    {
        $extension = new ProxmoxWP($config + [
            'api_base' => self::env('PROXMOXWP_TEST_API_URL'),
            'api_key' => self::env('PROXMOXWP_TEST_API_TOKEN'),
            'public_ip' => self::env('PROXMOXWP_TEST_PUBLIC_IP'),
            'job_wait' => 60,
        ]);
        $extension->boot();
        $this->router->getRoutes()->refreshNameLookups();
        ExtensionHelper::$extension = $extension;

        return $extension;
    }

    /** The client the extension would build: the live API's address and token. */
    protected static function client(?string $token = null, ?string $url = null): ApiClient
    {
        return new ApiClient($url ?? self::env('PROXMOXWP_TEST_API_URL'), $token ?? self::env('PROXMOXWP_TEST_API_TOKEN'));
    }

    /** Wait for the job an answer started and return it; fail unless it ends in `$expect`. */
    protected static function awaitJob(ApiClient $client, array $answer, string $expect = 'succeeded'): array
    {
        self::assertIsInt($answer['job_id'] ?? null, 'the answer names its job: ' . json_encode($answer));
        $job = self::waitUntil(function () use ($client, $answer) {
            $job = $client->job($answer['job_id']);

            return in_array($job['state'] ?? '', ['succeeded', 'failed', 'cancelled'], true) ? $job : null;
        }, 90, "job {$answer['job_id']} to finish");
        self::assertSame($expect, $job['state'], json_encode($job));

        return $job;
    }

    /** A new name under the zone whose every name points to the test API's public IP. */
    protected static function pointingDomain(string $label = 'shop'): string
    {
        return $label . '-' . bin2hex(random_bytes(4)) . '.' . self::env('PROXMOXWP_TEST_DOMAIN_ZONE');
    }

    /** What the next page load sees: this request's flash data moves on, the previous one's goes. */
    protected function nextRequest(): void
    {
        $this->session->ageFlashData();
    }

    /** A service id no other test of this run uses (each test starts from a site of its own). */
    protected static function newService(string $productName = 'Basic', string $status = Service::STATUS_ACTIVE, bool $withServer = true): Service
    {
        static $next = 0;

        return new Service(((int) self::env('PROXMOXWP_TEST_SERVICE_BASE')) + (++$next), 'owner@example.com', $productName, $status, withServer: $withServer);
    }

    protected static function env(string $name): string
    {
        $value = getenv($name);
        if ($value === false || $value === '') {
            self::fail("{$name} is not set: run these tests through tests/test_paymenter.py, which starts the API");
        }

        return $value;
    }

    /** A loopback port nothing listens on: the address of a backend that is down. */
    protected static function closedPort(): int
    {
        $socket = stream_socket_server('tcp://127.0.0.1:0');
        $port = (int) substr(strrchr(stream_socket_get_name($socket, false), ':'), 1);
        fclose($socket);

        return $port;
    }

    /** Poll until `$condition` returns something other than null, or fail after `$seconds`. */
    protected static function waitUntil(callable $condition, float $seconds, string $what): mixed
    {
        $deadline = microtime(true) + $seconds;
        do {
            $result = $condition();
            if ($result !== null) {
                return $result;
            }
            usleep(200_000);
        } while (microtime(true) < $deadline);
        self::fail("{$what} did not happen within {$seconds} s");
    }
}
