<?php

namespace App\Attributes;

use Attribute;

/** Stand-in for Paymenter 1.x's App\Attributes\ExtensionMeta, with the same constructor. */
#[Attribute(Attribute::TARGET_CLASS)]
class ExtensionMeta
{
    public function __construct(
        public string $name,
        public string $description,
        public string $version,
        public string $author,
        public string $url = '',
        public string $icon = '',
    ) {}
}
