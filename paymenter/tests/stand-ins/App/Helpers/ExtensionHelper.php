<?php

namespace App\Helpers;

/**
 * Stand-in for Paymenter's ExtensionHelper::callService: calls the hook on the extension the test registered,
 * with Paymenter's arguments (service, product settings, service properties, then the extra arguments).
 */
class ExtensionHelper
{
    public static ?object $extension = null;

    public static function callService($service, $function, $args = [], $mayFail = false)
    {
        return self::$extension->{$function}($service, [], [], ...$args);
    }
}
