<?php

namespace Paymenter\Extensions\Servers\ProxmoxWP;

use Illuminate\Support\Facades\Session;

/**
 * The line shown at the top of the Overview after an action: what was done, or why not. It travels to the next
 * page through the session's flash data (the action redirects back to the service page).
 */
final class Notice
{
    public const SESSION_KEY = 'proxmoxwp.notice';

    public const CONFIRM_KEY = 'proxmoxwp.confirm';

    /** @return array{type: string, message: string} */
    public static function success(string $message): array
    {
        return ['type' => 'success', 'message' => $message];
    }

    /** @return array{type: string, message: string} */
    public static function error(string $message): array
    {
        return ['type' => 'error', 'message' => $message];
    }

    public static function flash(array $notice): void
    {
        Session::flash(self::SESSION_KEY, $notice);
    }

    /** The notice of the last action, if any and well-formed. */
    public static function current(): ?array
    {
        $notice = Session::get(self::SESSION_KEY);
        if (!is_array($notice) || !is_string($notice['message'] ?? null)) {
            return null;
        }

        return ['type' => ($notice['type'] ?? '') === 'success' ? 'success' : 'error', 'message' => $notice['message']];
    }
}
