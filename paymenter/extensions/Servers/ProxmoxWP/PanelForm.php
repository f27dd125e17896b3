<?php

namespace Paymenter\Extensions\Servers\ProxmoxWP;

use App\Helpers\ExtensionHelper;
use App\Models\Service;
use Illuminate\Http\RedirectResponse;
use Illuminate\Http\Request;
use Illuminate\Support\Facades\Redirect;

/**
 * The Overview's forms post here (routes.php), then go back to the service page, which shows the notice
 * (post/redirect/get). Paymenter's ExtensionHelper::callService calls the service's server with the product's
 * settings and the service's properties; with `mayFail` it swallows what the extension throws, but it throws itself
 * when the product has no server, so that case is answered here, before the call, with a sentence and no 500.
 */
final class PanelForm
{
    /** What a form may send; anything else in the request is ignored. */
    public const FIELDS = ['action', 'domain', 'bak'];

    public function __invoke(Request $request, Service $service): RedirectResponse
    {
        Notice::flash($this->notice($service, $request->only(self::FIELDS)));

        return Redirect::to(ProxmoxWP::overviewUrl($service));
    }

    private function notice(Service $service, array $input): array
    {
        if (!$service->product?->server) {
            return Notice::error('This service is not connected to a hosting server. Please contact support.');
        }
        $notice = ExtensionHelper::callService($service, 'handlePanelForm', [$input], true);

        return is_array($notice) ? $notice : Notice::error('That action is not available.');
    }
}
