<?php

use App\Http\Middleware\MustVerfiyEmail;
use Illuminate\Support\Facades\Route;
use Paymenter\Extensions\Servers\ProxmoxWP\ActivityFeed;
use Paymenter\Extensions\Servers\ProxmoxWP\PanelForm;

// The Overview's forms and its activity feed, behind the middleware of Paymenter's own service page: `web` (session
// and CSRF), `auth`, a verified e-mail (Paymenter's class is spelt MustVerfiyEmail) and `can:view,service` (the
// customer's own service).
$servicePage = ['web', 'auth', MustVerfiyEmail::class, 'can:view,service'];

Route::post('/extensions/proxmoxwp/services/{service}', PanelForm::class)
    ->middleware($servicePage)
    ->name('extensions.servers.proxmoxwp.panel');

Route::get('/extensions/proxmoxwp/services/{service}/activity', ActivityFeed::class)
    ->middleware($servicePage)
    ->name('extensions.servers.proxmoxwp.activity');
