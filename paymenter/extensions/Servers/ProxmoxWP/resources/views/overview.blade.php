{{-- Paymenter prints this view unescaped inside the service page: every value goes through {{ }} (escaped), never {!! !!}. --}}
<div class="proxmoxwp flex flex-col gap-6" data-proxmoxwp-overview>
    @if ($notice)
        <div role="status" class="proxmoxwp-notice proxmoxwp-notice-{{ $notice['type'] }} rounded-md p-3 {{ $notice['type'] === 'success' ? 'bg-success/10 text-success' : 'bg-error/10 text-error' }}">
            {{ $notice['message'] }}
        </div>
    @endif

    @if ($confirmReset)
        <div class="proxmoxwp-confirm-reset rounded-md border border-error p-3 flex items-center gap-3">
            <span>Reset your site to its freshly installed state? This cannot be undone, except from a backup.</span>
            @include('proxmoxwp::action-button', ['action' => 'reset', 'label' => 'Yes, reset my site', 'class' => 'rounded-md bg-error px-3 py-1 text-white'])
        </div>
    @endif

    <section class="proxmoxwp-status" data-part="status">
        <h3 class="text-lg font-semibold">Your site</h3>
        @if ($siteError)
            <p class="proxmoxwp-error text-error" role="alert">{{ $siteError }}</p>
        @else
            <dl class="grid grid-cols-2 gap-x-4 gap-y-1">
                <dt>Address</dt>
                <dd>
                    @if ($siteLink)
                        <a href="{{ $siteLink }}" target="_blank" rel="noopener noreferrer">{{ $site['subdomain'] }}</a>
                    @else
                        {{ $site['subdomain'] }}
                    @endif
                </dd>
                <dt>State</dt>
                <dd data-state="{{ $site['state'] }}">
                    {{ ucfirst($site['state']) }}
                    @if (!empty($site['heading_to']))
                        <span class="text-sm">(changing to {{ $site['heading_to'] }}…)</span>
                    @endif
                </dd>
                @if (!empty($site['failure_reason']))
                    <dt>Last problem</dt>
                    <dd class="text-error">{{ $site['failure_reason'] }}</dd>
                @endif
                <dt>Plan</dt>
                <dd>{{ $site['plan'] }}</dd>
                <dt>WordPress</dt>
                <dd>
                    Log in with the “Log in to WordPress” button: no password needed.
                    @include('proxmoxwp::action-button', ['action' => 'new_password', 'label' => 'Set a new admin password', 'class' => 'ml-2 underline'])
                </dd>
                <dt>Visitors</dt>
                <dd>
                    {{ $site['proxy_enabled'] ? 'Let through' : 'Kept out (site offline)' }}
                    @include('proxmoxwp::action-button', ['action' => 'toggle_proxy', 'label' => $site['proxy_enabled'] ? 'Take the site offline' : 'Put the site online', 'class' => 'ml-2 underline'])
                </dd>
            </dl>
        @endif
    </section>

    @if ($activity && $activity['job'])
        @php($job = $activity['job'])
        {{-- While a job runs the page asks the activity feed every few seconds and updates this part (and the state above). --}}
        <section class="proxmoxwp-activity" data-part="activity" data-proxmoxwp-activity data-url="{{ $activityUrl }}" data-busy="{{ $activity['busy'] ? '1' : '0' }}">
            <h3 class="text-lg font-semibold">{{ $activity['busy'] ? 'Happening now' : 'Last change' }}</h3>
            <p><span data-activity-label>{{ $job['label'] }}</span>: <span data-activity-text data-job-state="{{ $job['state'] }}">{{ $job['text'] }}</span></p>
            <progress data-activity-bar max="{{ $job['total'] ?? 1 }}" value="{{ $job['done'] }}" @if ($job['total'] === null || !$activity['busy']) hidden @endif></progress>
        </section>
        <script>
            (function () {
                var part = document.currentScript.previousElementSibling;
                if (!part || part.dataset.following) { return; }
                part.dataset.following = '1';
                var show = function (activity) {
                    var job = activity.job;
                    if (!job) { return; }
                    part.querySelector('h3').textContent = activity.busy ? 'Happening now' : 'Last change';
                    part.querySelector('[data-activity-label]').textContent = job.label;
                    var text = part.querySelector('[data-activity-text]');
                    text.textContent = job.text;
                    text.dataset.jobState = job.state;
                    var bar = part.querySelector('[data-activity-bar]');
                    bar.hidden = !activity.busy || job.total === null;
                    bar.max = job.total || 1;
                    bar.value = job.done;
                    var state = document.querySelector('[data-proxmoxwp-overview] [data-state]');
                    if (state && activity.state) {
                        state.dataset.state = activity.state;
                        state.textContent = activity.state.charAt(0).toUpperCase() + activity.state.slice(1)
                            + (activity.heading_to ? ' (changing to ' + activity.heading_to + '…)' : '');
                    }
                    part.dataset.busy = activity.busy ? '1' : '0';
                };
                var ask = function () {
                    fetch(part.dataset.url, {credentials: 'same-origin', headers: {Accept: 'application/json'}})
                        .then(function (answer) { return answer.ok ? answer.json() : null; })
                        .then(function (activity) {
                            if (activity && !activity.error) { show(activity); }
                            if (!activity || activity.busy) { setTimeout(ask, 3000); }
                        })
                        .catch(function () { setTimeout(ask, 6000); });
                };
                if (part.dataset.busy === '1') { setTimeout(ask, 3000); }
            })();
        </script>
    @endif

    <section class="proxmoxwp-domains" data-part="domains">
        <h3 class="text-lg font-semibold">Your domains</h3>
        @if ($domainsError)
            <p class="proxmoxwp-error text-error" role="alert">{{ $domainsError }}</p>
        @else
            <p class="text-sm">{{ $domains['quota']['used'] }} of {{ $domains['quota']['limit'] }} used.</p>
            @if (count($domains['domains']) === 0)
                <p>No domain of your own yet. Point its DNS to your site (a CNAME to {{ $site['subdomain'] ?? 'your site\'s address' }}), then add it here.</p>
            @else
                <ul>
                    @foreach ($domains['domains'] as $domain)
                        <li class="flex items-center gap-3" data-domain="{{ $domain['domain'] }}">
                            <span>{{ $domain['domain_unicode'] }}</span>
                            <span class="text-sm" data-domain-state="{{ $domain['state'] }}">{{ str_replace('_', ' ', $domain['state']) }}</span>
                            @if (!empty($domain['message']))
                                <span class="text-sm text-error">{{ $domain['message'] }}</span>
                            @endif
                            @include('proxmoxwp::action-button', ['action' => 'remove_domain', 'label' => 'Remove', 'fields' => ['domain' => $domain['domain']]])
                        </li>
                    @endforeach
                </ul>
            @endif
            @if ($domains['quota']['available'] > 0)
                <form method="post" action="{{ $formUrl }}" class="flex items-center gap-2">
                    <input type="hidden" name="_token" value="{{ $csrfToken }}">
                    <input type="hidden" name="action" value="add_domain">
                    <label for="proxmoxwp-domain">Add a domain</label>
                    <input id="proxmoxwp-domain" type="text" name="domain" maxlength="253" placeholder="www.example.com" required>
                    <button type="submit" class="underline">Add</button>
                </form>
            @endif
        @endif
    </section>

    <section class="proxmoxwp-backups" data-part="backups">
        <h3 class="text-lg font-semibold">Your backups</h3>
        @if ($backupsError)
            <p class="proxmoxwp-error text-error" role="alert">{{ $backupsError }}</p>
        @else
            <p class="text-sm">{{ $backups['quota']['used'] }} of {{ $backups['quota']['limit'] }} used.</p>
            @if (count($backups['backups']) === 0)
                <p>No backup yet.</p>
            @else
                <ul>
                    @foreach ($backups['backups'] as $backup)
                        <li class="flex items-center gap-3" data-backup="{{ $backup['name'] }}">
                            <span>{{ $backup['name'] }}</span>
                            <span class="text-sm">{{ $backup['state'] }}</span>
                            <span class="text-sm">{{ $backup['created_at'] }}</span>
                            @include('proxmoxwp::action-button', ['action' => 'restore_backup', 'label' => 'Restore', 'fields' => ['bak' => $backup['name']]])
                            @include('proxmoxwp::action-button', ['action' => 'delete_backup', 'label' => 'Delete', 'fields' => ['bak' => $backup['name']]])
                        </li>
                    @endforeach
                </ul>
            @endif
            @if ($backups['quota']['available'] > 0)
                @include('proxmoxwp::action-button', ['action' => 'create_backup', 'label' => 'Make a backup now'])
            @endif
        @endif
    </section>
</div>
