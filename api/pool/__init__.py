"""The warm pool (docs/pool.md): containers made from the golden image ahead of time, one of which a new site takes
over instead of waiting for its own. `members` is what the API does in a request (take a member for a site, let it
go); `keeper` is what the workers do in the background (check, drain, fill); `images` names a golden image as the
collection's modules tag it."""
