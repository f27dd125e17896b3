<?php

namespace App\Models;

/**
 * Stand-in for Paymenter's Service model: the attributes the extension reads (id, status, user->email,
 * product->name), as plain properties instead of an Eloquent model backed by Paymenter's database.
 */
class Service
{
    public const STATUS_ACTIVE = 'active';

    public object $user;

    public object $product;

    public function __construct(public int $id, string $email = 'owner@example.com', string $productName = 'Basic', public string $status = self::STATUS_ACTIVE)
    {
        $this->user = (object) ['email' => $email];
        $this->product = (object) ['name' => $productName];
    }
}
