<?php

namespace ProxmoxWP\Tests;

use Illuminate\Container\Container;
use Illuminate\Contracts\View\Factory as ViewFactoryContract;
use Illuminate\Events\Dispatcher;
use Illuminate\Filesystem\Filesystem;
use Illuminate\Http\Request;
use Illuminate\Routing\Redirector;
use Illuminate\Routing\Router;
use Illuminate\Routing\UrlGenerator;
use Illuminate\Session\ArraySessionHandler;
use Illuminate\Session\Store;
use Illuminate\Support\Facades\Facade;
use Illuminate\View\Compilers\BladeCompiler;
use Illuminate\View\Engines\CompilerEngine;
use Illuminate\View\Engines\EngineResolver;
use Illuminate\View\Engines\PhpEngine;
use Illuminate\View\Factory as ViewFactory;
use Illuminate\View\FileViewFinder;
use Monolog\Handler\TestHandler;
use Monolog\Logger;

/**
 * What Paymenter gives an extension at run time, built from Laravel's own components: a container behind the
 * facades, Blade views (compiled into a directory of their own), a session, a router with Paymenter's
 * `services.show` route, URLs and redirects on https://panel.example.test and a log. Used by the tests and bench/.
 */
final class PaymenterRuntime
{
    public const PANEL_URL = 'https://panel.example.test/';

    private function __construct(
        public readonly Container $app,
        public readonly Store $session,
        public readonly Router $router,
        public readonly TestHandler $log,
        private readonly string $compiledViews,
    ) {}

    /** `$panelUrl`: where the panel answers (serve.php gives the address the browser uses). */
    public static function start(string $panelUrl = self::PANEL_URL): self
    {
        $app = new Container();
        Container::setInstance($app);
        Facade::clearResolvedInstances();
        Facade::setFacadeApplication($app);

        $events = new Dispatcher($app);
        $files = new Filesystem();
        $compiledViews = sys_get_temp_dir() . '/proxmoxwp-views-' . bin2hex(random_bytes(6));
        mkdir($compiledViews);
        $blade = new BladeCompiler($files, $compiledViews);
        $engines = new EngineResolver();
        $engines->register('blade', fn () => new CompilerEngine($blade, $files));
        $engines->register('php', fn () => new PhpEngine($files));
        $views = new ViewFactory($engines, new FileViewFinder($files, []), $events);
        $views->setContainer($app);
        $app->instance('events', $events);
        $app->instance('view', $views);
        $app->instance(ViewFactoryContract::class, $views);
        $app->instance('blade.compiler', $blade);

        $session = new Store('paymenter_session', new ArraySessionHandler(10));
        $session->start();
        $app->instance('session', $session);

        $router = new Router($events, $app);
        $router->get('/services/{service}', fn () => '')->name('services.show');
        $router->getRoutes()->refreshNameLookups();  // as Laravel does once the route files are loaded
        $app->instance('router', $router);
        $url = new UrlGenerator($router->getRoutes(), Request::create($panelUrl));
        $app->instance('url', $url);
        $redirector = new Redirector($url);
        $redirector->setSession($session);
        $app->instance('redirect', $redirector);

        $log = new TestHandler();
        $app->instance('log', new Logger('paymenter', [$log]));

        return new self($app, $session, $router, $log, $compiledViews);
    }

    public function stop(): void
    {
        (new Filesystem())->deleteDirectory($this->compiledViews);
        Facade::clearResolvedInstances();
        Facade::setFacadeApplication(null);
        Container::setInstance(null);
    }
}
