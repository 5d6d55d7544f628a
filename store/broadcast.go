package store

import (
	"context"
	"time"
)

// Broadcaster is implemented by stores that several instances share (Redis): a
// message published by one instance reaches every instance's subscriber, itself included.
//
// Delivery is at most once: a message published while a subscriber is
// disconnected is lost to it, which is why Subscribe has onResync. Memory and
// Bolt do not implement Broadcaster: they serve a single instance (a bbolt
// file is locked by the one process that opened it, so instances cannot share
// one anyway).
type Broadcaster interface {
	Publish(ctx context.Context, topic, msg string) error
	// Subscribe calls onMessage for each message on topic until ctx ends. After the
	// connection to the server was lost and is back, it calls onResync before
	// delivering further messages (messages published meanwhile were lost, so the
	// caller reloads its state). It returns once the first subscription is active
	// (or ctx ended / the first attempt failed with an error), and keeps
	// reconnecting with backoff in the background.
	//
	// The callbacks run on one goroutine, one at a time, in the order the
	// server sent the messages; either may be nil. Neither is called once ctx
	// has ended. When the first attempt fails (the server is down), Subscribe
	// returns the error and nothing runs in the background: retrying is up to
	// the caller.
	Subscribe(ctx context.Context, topic string, onMessage func(msg string), onResync func()) error
}

// RevocationLister lists live revocations: jti → until. Used to load the local
// revocation set at start and after a resync.
//
// It is part of Store, and stays a type of its own for the callers that need
// nothing else. The map is new (never nil) and
// the caller's to keep and modify. Redis derives until from the key's
// remaining time to live, so it may be a few milliseconds off the time given
// to Revoke (later rather than earlier).
type RevocationLister interface {
	Revocations(ctx context.Context) (map[string]time.Time, error)
}

var _ Broadcaster = (*Redis)(nil)
