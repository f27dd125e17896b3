<?php

namespace Paymenter\Extensions\Servers\ProxmoxWP;

use RuntimeException;

/**
 * A call to the ProxmoxWP API that did not succeed. The message is already cleaned: one sentence a customer may
 * read, never a URL, a token or an HTML page. `status` is the HTTP status (0 when the API could not be reached) and
 * `reason` the API's machine code (`quota_exceeded`, `suspended`, ...) when it gave one.
 */
class ApiError extends RuntimeException
{
    public function __construct(string $message, public readonly int $status = 0, public readonly ?string $reason = null)
    {
        parent::__construct($message, $status);
    }

    public function unreachable(): bool
    {
        return $this->status === 0;
    }
}
