package handlers

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/authgate/caddy-authgate/store"
)

// revocations is this instance's copy of the revoked sessions (sid → until), so
// that the guard checks revocation without a store round-trip. It is loaded from
// the store at start and kept current by the store's broadcasts (Redis pub/sub),
// which also carry database-session deletions.
type revocations struct {
	mu sync.RWMutex
	m  map[string]time.Time
}

func newRevocations() *revocations { return &revocations{m: map[string]time.Time{}} }

func (s *revocations) has(jti string, now time.Time) bool {
	if jti == "" {
		return false
	}
	s.mu.RLock()
	until, ok := s.m[jti]
	s.mu.RUnlock()
	return ok && now.Before(until)
}

func (s *revocations) add(jti string, until time.Time, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[jti] = until
	if len(s.m)%1024 == 0 {
		for k, u := range s.m {
			if !now.Before(u) {
				delete(s.m, k)
			}
		}
	}
}

// merge adds the revocations of m. Nothing is ever dropped: a revocation is
// final, and a store that lost its data (a Redis restarted without
// persistence) must not bring signed-out tokens back to life on the instances
// that knew of them. Expired entries are pruned by add.
func (s *revocations) merge(m map[string]time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for jti, until := range m {
		if old, ok := s.m[jti]; !ok || until.After(old) {
			s.m[jti] = until
		}
	}
}

// The store's optional abilities (see package store).
type (
	broadcaster interface {
		Publish(ctx context.Context, topic, msg string) error
		Subscribe(ctx context.Context, topic string, onMessage func(msg string), onResync func()) error
	}
	revocationLister interface {
		Revocations(ctx context.Context) (map[string]time.Time, error)
	}
)

const eventsTopic = "sessions"

// startRevocations loads the revocations and subscribes to other instances' events.
func (rl *realm) startRevocations(ctx context.Context) error {
	if err := rl.loadRevocations(ctx); err != nil {
		return err
	}
	b, ok := rl.store.(broadcaster)
	if !ok {
		return nil
	}
	return b.Subscribe(ctx, eventsTopic, rl.onEvent, func() {
		// Events were missed while the connection was down: reload, and forget
		// cached database sessions, which may have been deleted meanwhile.
		if err := rl.loadRevocations(ctx); err != nil {
			rl.logger.Error("reloading revocations after a reconnect", zap.Error(err))
		}
		if rl.database {
			rl.cache.clear()
		}
	})
}

func (rl *realm) loadRevocations(ctx context.Context) error {
	l, ok := rl.store.(revocationLister)
	if !ok {
		return nil
	}
	m, err := l.Revocations(ctx)
	if err != nil {
		return err
	}
	rl.revoked.merge(m)
	return nil
}

// onEvent applies another instance's event: "sid <id> <unix until>" or
// "session <hash>".
func (rl *realm) onEvent(msg string) {
	kind, rest, _ := strings.Cut(msg, " ")
	switch kind {
	case "sid":
		sid, until, _ := strings.Cut(rest, " ")
		sec, err := strconv.ParseInt(until, 10, 64)
		if err == nil && sid != "" {
			rl.revoked.add(sid, time.Unix(sec, 0), rl.now())
		}
	case "session":
		rl.cache.remove(rest)
	}
}

func (rl *realm) broadcast(ctx context.Context, msg string) {
	if b, ok := rl.store.(broadcaster); ok {
		if err := b.Publish(ctx, eventsTopic, msg); err != nil {
			rl.logger.Error("telling other instances about a sign-out failed", zap.Error(err))
		}
	}
}

// endSession ends the request's session everywhere: a jwt session's sid is
// revoked, a database session is deleted.
func (rl *realm) endSession(ctx context.Context, st *sessionState) error {
	now := rl.now()
	rl.cache.remove(st.key)
	if rl.database {
		// Deleted before other instances hear of it (see revokeSessions); a
		// request here may have cached it again meanwhile: forget it again.
		err := rl.store.DeleteSession(ctx, st.key)
		rl.cache.remove(st.key)
		rl.broadcast(ctx, "session "+st.key)
		return err
	}
	if st.entry == nil || st.entry.sid == "" {
		return nil
	}
	return rl.revokeSID(ctx, st.entry.sid, now)
}

// revokeSID revokes every token of a jwt session on every instance. Tokens of a
// session never outlive max_age from now, so the revocation need not either.
func (rl *realm) revokeSID(ctx context.Context, sid string, now time.Time) error {
	until := now.Add(rl.maxAge)
	rl.revoked.add(sid, until, now)
	var errs []error
	if err := rl.store.Revoke(ctx, sid, until); err != nil {
		errs = append(errs, err)
	}
	if err := rl.store.DeleteSession(ctx, jwtSessionID(sid)); err != nil && !errors.Is(err, store.ErrNotFound) {
		errs = append(errs, err)
	}
	rl.broadcast(ctx, "sid "+sid+" "+strconv.FormatInt(until.Unix(), 10))
	return errors.Join(errs...)
}

// jwtSessionID names the store record that lists a jwt session under its user,
// so that an administrator can see and revoke it.
func jwtSessionID(sid string) string { return "jwt:" + sid }
