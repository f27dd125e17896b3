<?php

namespace Paymenter\Extensions\Servers\ProxmoxWP;

use App\Helpers\ExtensionHelper;
use App\Models\Service;
use Illuminate\Http\JsonResponse;

/**
 * The Overview asks here every few seconds while a job of its site runs (routes.php): what Activity says, as JSON,
 * so the page shows the job's progress and then its result without being loaded again. Paymenter's callService
 * throws for a product without a server: that case is answered before the call.
 */
final class ActivityFeed
{
    public function __invoke(Service $service): JsonResponse
    {
        if (!$service->product?->server) {
            return new JsonResponse(['error' => 'This service is not connected to a hosting server.'], 409);
        }
        $activity = ExtensionHelper::callService($service, 'activity', [], true);
        if (!is_array($activity)) {
            return new JsonResponse(['error' => 'Something went wrong on our side.'], 500);
        }

        return new JsonResponse($activity, isset($activity['error']) ? 502 : 200, ['Cache-Control' => 'no-store']);
    }
}
