<?php

/*
 * The extension's pages as Paymenter serves them to a signed-in customer, for a real browser in the tests
 * (tests/test_paymenter_overview.py): `php -S 127.0.0.1:PORT serve.php`. PaymenterRuntime with the extension built
 * from PROXMOXWP_TEST_API_URL / _API_TOKEN / _PUBLIC_IP and booted as on every request (its views and routes),
 * Paymenter's service page at /services/{id}?tab=overview (the page with the Overview in it), and the extension's
 * own routes. Paymenter's middleware (session, sign-in, e-mail verification, the view policy) is left out: the
 * browser is the service's owner, and the routes' middleware is checked by the PHPUnit suite.
 */

use App\Helpers\ExtensionHelper;
use App\Models\Service;
use Illuminate\Http\Request;
use Illuminate\Http\Response;
use Paymenter\Extensions\Servers\ProxmoxWP\ProxmoxWP;
use ProxmoxWP\Tests\PaymenterRuntime;
use Symfony\Component\HttpKernel\Exception\HttpExceptionInterface;

require __DIR__ . '/bootstrap.php';

$request = Request::capture();
$runtime = PaymenterRuntime::start($request->getSchemeAndHttpHost() . '/');
$runtime->app->instance('middleware.disable', true);

$extension = new ProxmoxWP([
    'api_base' => getenv('PROXMOXWP_TEST_API_URL'),
    'api_key' => getenv('PROXMOXWP_TEST_API_TOKEN'),
    'public_ip' => getenv('PROXMOXWP_TEST_PUBLIC_IP'),
]);
$extension->boot();
ExtensionHelper::$extension = $extension;

$router = $runtime->router;
$router->bind('service', fn (string $id) => new Service((int) $id));
// What Laravel's SubstituteBindings middleware does, with the middleware left out.
$router->matched(fn ($matched) => $router->substituteBindings($matched->route));
$router->get('/services/{service}', function (Service $service) use ($extension) {
    $overview = $extension->getView($service, [], [], ProxmoxWP::VIEW);

    return "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Service {$service->id}</title></head>"
        . "<body><main id=\"service\">{$overview}</main></body></html>";
})->name('services.show');
$router->getRoutes()->refreshNameLookups();

try {
    $response = $router->dispatch($request);
} catch (HttpExceptionInterface $e) {  // a path with no route (the browser's favicon): 404, as Laravel answers
    $response = new Response('', $e->getStatusCode(), $e->getHeaders());
} finally {
    $runtime->stop();  // its compiled views go with it, whatever the request came to
}
$response->send();
