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
                <dt>Visitors</dt>
                <dd>
                    {{ $site['proxy_enabled'] ? 'Let through' : 'Kept out (site offline)' }}
                    @include('proxmoxwp::action-button', ['action' => 'toggle_proxy', 'label' => $site['proxy_enabled'] ? 'Take the site offline' : 'Put the site online', 'class' => 'ml-2 underline'])
                </dd>
            </dl>
        @endif
    </section>

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
