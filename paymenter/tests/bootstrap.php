<?php

/*
 * PHPUnit bootstrap: Laravel's components from Debian's php-laravel-framework (the HTTP client, views and Blade,
 * session, routing, logging), the extension's classes, and the stand-ins for the few Paymenter classes it extends
 * or receives (tests/stand-ins). Paymenter itself needs Composer packages from Packagist, which CI cannot reach.
 */

require_once '/usr/share/php/Illuminate/autoload.php';
require_once '/usr/share/php/GuzzleHttp/autoload.php';
require_once '/usr/share/php/Monolog/autoload.php';

spl_autoload_register(function (string $class): void {
    $roots = [
        'Paymenter\\Extensions\\' => __DIR__ . '/../extensions/',
        'App\\' => __DIR__ . '/stand-ins/App/',
        'ProxmoxWP\\Tests\\' => __DIR__ . '/',
    ];
    foreach ($roots as $prefix => $directory) {
        if (str_starts_with($class, $prefix)) {
            $file = $directory . str_replace('\\', '/', substr($class, strlen($prefix))) . '.php';
            if (is_file($file)) {
                require $file;
            }

            return;
        }
    }
});
