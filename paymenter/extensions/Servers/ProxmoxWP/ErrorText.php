<?php

namespace Paymenter\Extensions\Servers\ProxmoxWP;

/**
 * Turns what a failed call brought back into one readable sentence. The API answers errors as JSON with an `error`
 * sentence; a proxy or web server in front of it may answer an HTML page instead, whose `<p>` says what happened;
 * texts that went through older clients carry an "API POST /path failed: HTTP 409:" prefix nobody needs to read.
 */
final class ErrorText
{
    /** Longest text shown: a whole page body is not a message. */
    public const MAX_LENGTH = 300;

    private const PREFIX = '/^\s*API\s+[A-Z]+\s+\S+\s+failed:\s*HTTP\s+\d{3}\s*[:\-–]?\s*/u';

    /** The readable text of an answer with this status and body; a sentence about the status when there is none. */
    public static function fromAnswer(int $status, string $body): string
    {
        $text = self::fromJson($body) ?? self::fromHtml($body) ?? $body;
        $text = self::clean($text);

        return $text !== '' ? $text : "The hosting API answered with HTTP {$status}.";
    }

    /** Strip the "API METHOD /path failed: HTTP nnn" prefix, tags and runs of whitespace; cut overlong texts. */
    public static function clean(string $text): string
    {
        $text = preg_replace(self::PREFIX, '', $text) ?? $text;
        $text = html_entity_decode(strip_tags($text), ENT_QUOTES | ENT_HTML5, 'UTF-8');
        $text = trim(preg_replace('/\s+/u', ' ', $text) ?? $text);
        if (mb_strlen($text) > self::MAX_LENGTH) {
            $text = rtrim(mb_substr($text, 0, self::MAX_LENGTH - 1)) . '…';
        }

        return $text;
    }

    private static function fromJson(string $body): ?string
    {
        $data = json_decode($body, true);
        if (!is_array($data)) {
            return null;
        }
        foreach (['error', 'message'] as $key) {
            if (isset($data[$key]) && is_string($data[$key]) && trim($data[$key]) !== '') {
                return $data[$key];
            }
        }

        return null;
    }

    private static function fromHtml(string $body): ?string
    {
        if (stripos($body, '<html') === false && stripos($body, '<p') === false) {
            return null;
        }
        foreach (['/<p\b[^>]*>(.*?)<\/p>/is', '/<h1\b[^>]*>(.*?)<\/h1>/is', '/<title\b[^>]*>(.*?)<\/title>/is'] as $pattern) {
            if (preg_match($pattern, $body, $match) && trim(strip_tags($match[1])) !== '') {
                return $match[1];
            }
        }

        return '';
    }
}
