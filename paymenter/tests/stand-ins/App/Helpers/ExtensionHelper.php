<?php

namespace App\Helpers;

use Exception;

/**
 * Stand-in for Paymenter 1.x's ExtensionHelper::callService and call, as they behave (read at v1.5.8): the product's
 * server is looked up first, and with `mayFail` a product without one throws (without it, nothing is called and
 * null is returned); the hook gets the service, the product's settings and the service's properties, then the extra
 * arguments; an Exception from the hook is thrown again, or with `mayFail` reported and swallowed (null). The
 * extension called is the one the test registered, as Paymenter builds it from the server's settings.
 */
class ExtensionHelper
{
    public static ?object $extension = null;

    /** What Paymenter's report() would have logged for a swallowed exception, newest last. */
    public static array $reported = [];

    public static function callService($service, $function, $args = [], $mayFail = false)
    {
        if (!$service->product->server) {
            if ($mayFail) {
                throw new Exception('No server assigned to this product');
            }

            return null;
        }

        return self::call(self::$extension, $function, [$service, $service->product->settings, $service->properties, ...$args], $mayFail);
    }

    public static function call($extension, $function, $args = [], $mayFail = false)
    {
        try {
            if (!method_exists($extension, $function)) {
                throw new Exception('Function not found');
            }

            return $extension->{$function}(...$args);
        } catch (Exception $e) {
            if (!$mayFail) {
                throw $e;
            }
            if (!str_ends_with($e->getMessage(), 'not found')) {
                self::$reported[] = $e;
            }

            return null;
        }
    }
}
