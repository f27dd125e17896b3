<?php

namespace ProxmoxWP\Tests;

use Paymenter\Extensions\Servers\ProxmoxWP\ErrorText;
use PHPUnit\Framework\TestCase;

/** What a customer reads when a call fails, whatever came back. */
final class ErrorTextTest extends TestCase
{
    public function testTheApisErrorSentenceIsTaken(): void
    {
        $body = json_encode(['success' => false, 'error' => 'The backup quota of your plan is used up.', 'code' => 'quota_exceeded']);

        $this->assertSame('The backup quota of your plan is used up.', ErrorText::fromAnswer(422, $body));
    }

    public function testAnHtmlPageGivesItsParagraph(): void
    {
        $page = "<!doctype html><html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1>\n"
            . "<p>The proxy server received an\n  invalid response from an <b>upstream</b> server.</p><hr><address>Apache</address></body></html>";

        $this->assertSame('The proxy server received an invalid response from an upstream server.', ErrorText::fromAnswer(502, $page));
    }

    public function testAnHtmlPageWithoutParagraphGivesItsHeading(): void
    {
        $page = '<html><head><title>504 Gateway Time-out</title></head><body><center><h1>504 Gateway Time-out</h1></center><hr><center>nginx</center></body></html>';

        $this->assertSame('504 Gateway Time-out', ErrorText::fromAnswer(504, $page));
    }

    public function testTheOldClientsPrefixIsStripped(): void
    {
        $this->assertSame(
            'The domain shop.example.com is already used by another site.',
            ErrorText::clean('API POST /action/setdomain failed: HTTP 409: The domain shop.example.com is already used by another site.'),
        );
        $this->assertSame('Backup not found.', ErrorText::clean('API GET /action/getbak failed: HTTP 404 - Backup not found.'));
    }

    public function testThePrefixIsStrippedFromAJsonError(): void
    {
        $body = json_encode(['error' => 'API POST /wp/upgrade/ failed: HTTP 503: The cluster cannot be reached.']);

        $this->assertSame('The cluster cannot be reached.', ErrorText::fromAnswer(503, $body));
    }

    public function testEntitiesAreDecodedOnceAndTagsRemoved(): void
    {
        $this->assertSame('Tom & Jerry <3', ErrorText::clean('<p>Tom &amp; Jerry &lt;3</p>'));
    }

    public function testAnEmptyAnswerSaysItsStatus(): void
    {
        $this->assertSame('The hosting API answered with HTTP 502.', ErrorText::fromAnswer(502, ''));
        $this->assertSame('The hosting API answered with HTTP 500.', ErrorText::fromAnswer(500, '   '));
    }

    public function testPlainTextIsKeptAndAnOverlongOneIsCut(): void
    {
        $this->assertSame('Service Unavailable', ErrorText::fromAnswer(503, "Service Unavailable\n"));
        $long = ErrorText::fromAnswer(500, str_repeat('word ', 200));

        $this->assertSame(ErrorText::MAX_LENGTH, mb_strlen($long));
        $this->assertStringEndsWith('…', $long);
    }
}
