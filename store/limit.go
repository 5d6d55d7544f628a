package store

import (
	"context"
	"errors"
	"strconv"
	"time"
)

// Limit caps the events counted for a key (failed sign-ins of a username,
// links sent to an address): after Max of them in Window, the key waits
// Backoff before its next event, twice as long after each further one, up to
// Window. Counts and waits are kept in the store, so every instance sharing
// it agrees.
type Limit struct {
	Max    int
	Window time.Duration
	// Backoff is the first wait; zero means Window (a hard cap).
	Backoff time.Duration
}

// limitPrefix keeps the limiter's keys apart from other hits and claims.
const limitPrefix = "limit:"

// Wait returns how long key must still wait before its next event; zero when
// it need not. It counts nothing.
func Wait(ctx context.Context, s Store, key string) (time.Duration, error) {
	v, err := s.GetClaim(ctx, limitPrefix+key)
	if errors.Is(err, ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	end, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, nil // not the limiter's value: no wait
	}
	return max(time.Until(time.Unix(0, end)), 0), nil
}

// Count counts one event for key and returns how long key must now wait
// before its next one (zero while under Max), and whether this event was
// past the limit itself: concurrent events that all passed Wait.
func (l Limit) Count(ctx context.Context, s Store, key string) (wait time.Duration, over bool, err error) {
	n, err := s.Hit(ctx, limitPrefix+key, l.Window)
	if err != nil || n < l.Max {
		return 0, false, err
	}
	wait = l.wait(n)
	end := time.Now().Add(wait).UnixNano()
	return wait, n > l.Max, s.SetClaim(ctx, limitPrefix+key, strconv.FormatInt(end, 10), wait)
}

// wait is the wait after the nth event, n >= Max.
func (l Limit) wait(n int) time.Duration {
	if l.Backoff <= 0 || l.Backoff >= l.Window {
		return l.Window
	}
	d := l.Backoff
	for i := l.Max; i < n && d < l.Window; i++ {
		d *= 2
	}
	return min(d, l.Window)
}
