<?php

/*
 * The PHP half of bench/paymenter_overview.py: times, against the live API it is given, one GET /status (the
 * baseline), the Overview's three calls one after another (what a page would cost without the pool), and the
 * whole Overview as the extension renders it (three calls at once, then the Blade view). Prints JSON.
 *
 *     php bench/paymenter_overview.php <api url> <token> <service id> <rounds>
 */

use App\Models\Service;
use Paymenter\Extensions\Servers\ProxmoxWP\ApiClient;
use Paymenter\Extensions\Servers\ProxmoxWP\ProxmoxWP;
use ProxmoxWP\Tests\PaymenterRuntime;

require __DIR__ . '/../paymenter/tests/bootstrap.php';

[, $url, $token, $serviceId, $rounds] = $argv + [null, null, null, null, '50'];
$runtime = PaymenterRuntime::start();
$extension = new ProxmoxWP(['api_base' => $url, 'api_key' => $token, 'public_ip' => '127.0.0.1']);
$extension->boot();
$runtime->router->getRoutes()->refreshNameLookups();
$service = new Service((int) $serviceId);
$client = new ApiClient($url, $token);

$measures = [
    'one GET /status' => fn () => $client->status($service->id),
    'three calls in turn' => function () use ($client, $service) {
        $client->status($service->id);
        $client->domains($service->id);
        $client->backups($service->id);
    },
    'Overview page' => fn () => $extension->getView($service, [], [], ProxmoxWP::VIEW),
];
$page = $extension->getView($service, [], [], ProxmoxWP::VIEW);
if (str_contains($page, 'role="alert"')) {
    fwrite(STDERR, "the Overview shows an error:\n{$page}\n");
    exit(1);
}

$times = array_fill_keys(array_keys($measures), []);
for ($round = 0; $round < (int) $rounds; $round++) {
    foreach ($measures as $name => $measure) {  // interleaved, so a slow moment of the machine hits all alike
        $started = hrtime(true);
        $measure();
        $times[$name][] = (hrtime(true) - $started) / 1e6;
    }
}
$runtime->stop();
echo json_encode(['milliseconds' => $times, 'page_bytes' => strlen($page)], JSON_PRETTY_PRINT), "\n";
