package outbox

// Hooks for the external tests.

func SetBeforeCommit(o *Options, f func() error) { o.beforeCommit = f }

func SetFreelist(o *Options, mapType, noSync bool) {
	if mapType {
		o.freelistType = "hashmap"
	} else {
		o.freelistType = "array"
	}
	o.noFreelistSync = noSync
}
