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

const eventsTopic = "sessions"

// startRevocations loads the revocations and subscribes to other instances' events.
func (s *sessions) startRevocations(ctx context.Context) error {
	if err := s.loadRevocations(ctx); err != nil {
		return err
	}
	b, ok := s.store.(store.Broadcaster)
	if !ok {
		return nil
	}
	return b.Subscribe(ctx, eventsTopic, s.onEvent, func() {
		// Events were missed while the connection was down: reload, and forget
		// cached database sessions, which may have been deleted meanwhile.
		if err := s.loadRevocations(ctx); err != nil {
			s.logger.Error("reloading revocations after a reconnect", zap.Error(err))
		}
		if s.database {
			s.cache.clear()
		}
	})
}

func (s *sessions) loadRevocations(ctx context.Context) error {
	l, ok := s.store.(store.RevocationLister)
	if !ok {
		return nil
	}
	m, err := l.Revocations(ctx)
	if err != nil {
		return err
	}
	s.revoked.merge(m)
	return nil
}

// onEvent applies another instance's event: "sid <id> <unix until>" or
// "session <hash>".
func (s *sessions) onEvent(msg string) {
	kind, rest, _ := strings.Cut(msg, " ")
	switch kind {
	case "sid":
		sid, until, _ := strings.Cut(rest, " ")
		sec, err := strconv.ParseInt(until, 10, 64)
		if err == nil && sid != "" {
			s.revoked.add(sid, time.Unix(sec, 0), s.now())
		}
	case "session":
		s.cache.remove(rest)
	}
}

func (s *sessions) broadcast(ctx context.Context, msg string) {
	if b, ok := s.store.(store.Broadcaster); ok {
		if err := b.Publish(ctx, eventsTopic, msg); err != nil {
			s.logger.Error("telling other instances about a sign-out failed", zap.Error(err))
		}
	}
}

// end ends the request's session everywhere: a jwt session's sid is revoked, a
// database session is deleted.
func (s *sessions) end(ctx context.Context, st *sessionState) error {
	s.cache.remove(st.key)
	if s.database {
		return s.deleteDatabaseSession(ctx, st.key)
	}
	if st.entry == nil || st.entry.sid == "" {
		return nil
	}
	return s.revokeSID(ctx, st.entry.sid, s.now())
}

// deleteDatabaseSession ends a database session on every instance. It is
// deleted from the store before the caches hear of it: an instance that
// dropped it from its cache and read it again before the deletion would cache
// it for another databaseCacheTTL.
func (s *sessions) deleteDatabaseSession(ctx context.Context, key string) error {
	err := s.store.DeleteSession(ctx, key)
	s.forgetDatabaseSession(ctx, key)
	return err
}

// forgetDatabaseSession drops a database session from every instance's cache,
// after the store changed it.
func (s *sessions) forgetDatabaseSession(ctx context.Context, key string) {
	s.cache.remove(key)
	s.broadcast(ctx, "session "+key)
}

// revokeSID revokes every token of a jwt session on every instance. Tokens of a
// session never outlive max_age from now, so the revocation need not either.
func (s *sessions) revokeSID(ctx context.Context, sid string, now time.Time) error {
	until := now.Add(s.maxAge)
	s.revoked.add(sid, until, now)
	var errs []error
	if err := s.store.Revoke(ctx, sid, until); err != nil {
		errs = append(errs, err)
	}
	if err := s.store.DeleteSession(ctx, jwtSessionID(sid)); err != nil && !errors.Is(err, store.ErrNotFound) {
		errs = append(errs, err)
	}
	s.broadcast(ctx, "sid "+sid+" "+strconv.FormatInt(until.Unix(), 10))
	return errors.Join(errs...)
}
