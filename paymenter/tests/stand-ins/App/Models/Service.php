<?php

namespace App\Models;

/**
 * Stand-in for Paymenter's Service model: the attributes the extension and ExtensionHelper read (id, status,
 * user->email, product->name, product->server, product->settings, properties), as plain properties instead of an
 * Eloquent model backed by Paymenter's database. `product->server` is null for a product without a server.
 */
class Service
{
    public const STATUS_ACTIVE = 'active';

    public object $user;

    public object $product;

    /** @param array<string, string> $productSettings the product's settings (its `plan`) */
    public function __construct(
        public int $id,
        string $email = 'owner@example.com',
        string $productName = 'Basic',
        public string $status = self::STATUS_ACTIVE,
        array $productSettings = [],
        bool $withServer = true,
        public array $properties = [],
    ) {
        $this->user = (object) ['email' => $email];
        $server = $withServer ? (object) ['extension' => 'ProxmoxWP', 'type' => 'server'] : null;
        $this->product = (object) ['name' => $productName, 'server' => $server, 'settings' => $productSettings];
    }
}
