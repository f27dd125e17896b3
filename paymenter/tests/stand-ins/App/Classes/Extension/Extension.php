<?php

namespace App\Classes\Extension;

/**
 * Stand-in for Paymenter 1.x's App\Classes\Extension\Extension (Paymenter itself cannot be installed here: it needs
 * Composer packages from Packagist). Same constructor and config() lookup as the real class, without its database
 * fallback: Paymenter always constructs server extensions with their settings.
 */
class Extension
{
    public function __construct(public $config = []) {}

    public function config($key)
    {
        return $this->config[$key] ?? null;
    }

    public function getConfig($values = [])
    {
        return [];
    }

    public function boot() {}
}
