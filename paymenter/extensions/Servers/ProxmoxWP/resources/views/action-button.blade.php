{{-- One button that posts an action of the Overview: $action, $label, and $fields (hidden name => value). --}}
<form method="post" action="{{ $formUrl }}" class="inline">
    <input type="hidden" name="_token" value="{{ $csrfToken }}">
    <input type="hidden" name="action" value="{{ $action }}">
    @foreach ($fields ?? [] as $name => $value)
        <input type="hidden" name="{{ $name }}" value="{{ $value }}">
    @endforeach
    <button type="submit" class="{{ $class ?? 'underline' }}">{{ $label }}</button>
</form>
