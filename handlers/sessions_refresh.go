package handlers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/authgate/caddy-authgate/store"
)

const (
	// refreshSkew: an access token is refreshed this long before it expires.
	refreshSkew = 30 * time.Second
	// refreshLockTTL bounds how long other instances wait for one instance's
	// refresh, and how long its result is kept for them.
	refreshLockTTL = 30 * time.Second
)

// refreshed is the outcome of refreshing one session token: the new cookie value
// and its cache entry.
type refreshed struct {
	token string
	entry *tokenEntry
}

// oauthClaims are what the token keeps of the provider's tokens when
// refresh_access_token is on, as in Auth.js's refresh-token-rotation guide.
func oauthClaims(account map[string]any) map[string]any {
	out := map[string]any{}
	for _, k := range []string{"provider", "access_token", "refresh_token", "expires_at"} {
		if v, ok := account[k]; ok {
			out[k] = v
		}
	}
	return out
}

// dueForRefresh reports whether e's access token expires within refreshSkew.
func (s *sessions) dueForRefresh(e *tokenEntry, now time.Time) bool {
	if !s.refreshOn || e.failedRefresh {
		return false
	}
	at := e.accessExpires
	return at != 0 && now.UnixNano() >= at-int64(refreshSkew)
}

// refresh returns the session token that replaces e's after its access token was
// refreshed. Concurrent requests with the same cookie share one refresh (single
// flight in this process); several instances share one through a short lock in
// the store, the others waiting for its result. A failed refresh yields a token
// without provider tokens and with error RefreshAccessTokenError: signed out.
func (s *sessions) refresh(ctx context.Context, raw string, e *tokenEntry, secure bool) *refreshed {
	if n := e.extra().next.Load(); n != nil {
		return n
	}
	v, _, _ := s.refreshes.Do(raw, func() (any, error) {
		if n := e.extra().next.Load(); n != nil {
			return n, nil
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 20*time.Second)
		defer cancel()
		n := s.refreshOnce(ctx, e, secure)
		if n != nil {
			e.extra().next.Store(n)
		}
		return n, nil
	})
	n, _ := v.(*refreshed)
	return n
}

func (s *sessions) refreshOnce(ctx context.Context, e *tokenEntry, secure bool) *refreshed {
	now := s.now()
	rt, _ := e.claimsMap()["refresh_token"].(string)
	sum := sha256.Sum256([]byte(rt))
	lockID := "refresh:" + hex.EncodeToString(sum[:])

	// The lock is claimed empty; its value becomes the new token once refreshed.
	err := s.store.Claim(ctx, lockID, "", refreshLockTTL)
	if errors.Is(err, store.ErrConflict) {
		return s.awaitRefresh(ctx, lockID, secure)
	}
	if err != nil {
		// Without the lock another instance might refresh too; with rotating
		// refresh tokens one of the two would then fail. Go on: better than
		// signing the user out because the store hiccupped.
		s.logger.Warn("refresh lock unavailable; refreshing without it", zap.Error(err))
	}

	old := e.claimsMap()
	claims := make(map[string]any, len(old))
	for k, v := range old {
		claims[k] = v
	}
	fresh, err := s.refreshWithProvider(ctx, claims)
	if err != nil {
		s.logger.Warn("refreshing the access token failed; the user must sign in again", zap.Any("user_id", claims["sub"]), zap.Error(err))
		delete(claims, "access_token")
		delete(claims, "refresh_token")
		delete(claims, "expires_at")
		claims["error"] = errRefresh
	} else {
		for k, v := range fresh {
			if v != "" && v != nil {
				claims[k] = v
			}
		}
	}
	tok, ne, err := s.issue(claims, secure, now)
	if err != nil {
		s.logger.Error("encoding the refreshed session", zap.Error(err))
		return nil
	}
	n := &refreshed{token: tok, entry: ne}
	if err := s.store.SetClaim(ctx, lockID, tok, refreshLockTTL); err != nil {
		s.logger.Warn("sharing the refreshed session with other instances", zap.Error(err))
	}
	return n
}

func (s *sessions) refreshWithProvider(ctx context.Context, claims map[string]any) (map[string]any, error) {
	id, _ := claims["provider"].(string)
	p, ok := s.oauth(id)
	if !ok {
		return nil, fmt.Errorf("the token names no OAuth provider of this realm (%q)", id)
	}
	rt, _ := claims["refresh_token"].(string)
	return p.Refresh(ctx, rt)
}

// awaitRefresh waits for another instance's refresh of the same token.
func (s *sessions) awaitRefresh(ctx context.Context, lockID string, secure bool) *refreshed {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		tok, err := s.store.GetClaim(ctx, lockID)
		if err == nil {
			if tok != "" {
				claims, err := s.codecs[idx(secure)].Decode(tok, s.now())
				if err != nil {
					return nil
				}
				e := newTokenEntry(claims)
				s.cache.put(tok, e, s.now())
				return &refreshed{token: tok, entry: e}
			}
		} else if !errors.Is(err, store.ErrNotFound) {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// next is set once a token has been refreshed, so later requests with the old
// cookie get the new token without refreshing again.
type nextToken = atomic.Pointer[refreshed]
