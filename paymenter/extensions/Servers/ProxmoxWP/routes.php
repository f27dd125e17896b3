<?php

use App\Helpers\ExtensionHelper;
use App\Models\Service;
use Illuminate\Http\Request;
use Illuminate\Support\Facades\Redirect;
use Illuminate\Support\Facades\Route;
use Paymenter\Extensions\Servers\ProxmoxWP\Notice;
use Paymenter\Extensions\Servers\ProxmoxWP\ProxmoxWP;

// The Overview's forms post here (web middleware: session and CSRF; `can:view,service`: the customer's own
// service, as Paymenter's service page checks), then go back to the page, which shows the notice (post/redirect/get).
Route::post('/extensions/proxmoxwp/services/{service}', function (Request $request, Service $service) {
    $notice = ExtensionHelper::callService($service, 'handlePanelForm', [$request->only(['action', 'domain', 'bak'])], true);
    Notice::flash(is_array($notice) ? $notice : Notice::error('That action is not available.'));

    return Redirect::to(ProxmoxWP::overviewUrl($service));
})->middleware(['web', 'auth', 'can:view,service'])->name('extensions.servers.proxmoxwp.panel');
