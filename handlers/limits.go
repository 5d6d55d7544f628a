package handlers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/authgate/caddy-authgate/store"
)

// The limits of sign-in attempts, counted in the store so that every instance
// agrees. Each is per pair (an account and the client asking) with a higher cap
// per account, so that other clients cannot use up the owner's allowance, plus
// a cap per client across accounts.
const (
	// Failed credentials sign-ins in a provider's failure_window.
	failuresPerUserClient = 5
	failuresPerUser       = 20
	failuresPerClient     = 20
	// failureBackoffs is how many first waits make up the window: 15m gives
	// 30s, then 1m, 2m, … up to 15m.
	failureBackoffs = 30

	// Sign-in links sent in emailWindow.
	emailPerAddressClient = 5
	emailPerAddress       = 20
	emailPerClient        = 20
	emailWindow           = time.Hour
)

// limitKey is one counter a request is held to.
type limitKey struct {
	key   string
	limit store.Limit
}

// credentialKeys are the counters of failed sign-ins with username through
// provider from client.
func credentialKeys(provider, username, client string, window time.Duration) []limitKey {
	backoff := max(window/failureBackoffs, time.Second)
	user := "signin:" + provider + ":user:" + digest(strings.ToLower(strings.TrimSpace(username)))
	return []limitKey{
		{user + ":client:" + client, store.Limit{Max: failuresPerUserClient, Window: window, Backoff: backoff}},
		{user, store.Limit{Max: failuresPerUser, Window: window, Backoff: backoff}},
		{"signin:" + provider + ":client:" + client, store.Limit{Max: failuresPerClient, Window: window, Backoff: backoff}},
	}
}

// emailKeys are the counters of sign-in links sent to addr at client's request.
func emailKeys(addr, client string) []limitKey {
	return []limitKey{
		{"email:" + digest(addr) + ":client:" + client, store.Limit{Max: emailPerAddressClient, Window: emailWindow}},
		{"email:" + digest(addr), store.Limit{Max: emailPerAddress, Window: emailWindow}},
		{"email-client:" + client, store.Limit{Max: emailPerClient, Window: emailWindow}},
	}
}

// digest keeps what a client typed out of store keys, at a fixed length.
func digest(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:16])
}

// limitClient is the client a limit counts for: its IP, or its /64 for IPv6,
// the block one subscriber usually has all of.
func limitClient(r *http.Request) string {
	ip, err := netip.ParseAddr(clientIP(r))
	if err != nil {
		return clientIP(r)
	}
	ip = ip.Unmap()
	if ip.Is4() {
		return ip.String()
	}
	return netip.PrefixFrom(ip, 64).Masked().String()
}

// waitFor is how long the longest-waiting of keys must still wait; zero when
// none must.
func waitFor(ctx context.Context, st store.Store, keys []limitKey) (time.Duration, error) {
	var longest time.Duration
	for _, k := range keys {
		d, err := store.Wait(ctx, st, k.key)
		if err != nil {
			return 0, err
		}
		longest = max(longest, d)
	}
	return longest, nil
}

// countAll counts one event for each of keys, and returns the longest wait
// that set and whether the event was past any key's limit.
func countAll(ctx context.Context, st store.Store, keys []limitKey) (wait time.Duration, over bool, err error) {
	for _, k := range keys {
		d, o, err := k.limit.Count(ctx, st, k.key)
		if err != nil {
			return 0, false, err
		}
		wait, over = max(wait, d), over || o
	}
	return wait, over, nil
}

// retryAfter is a wait in whole seconds, rounded up, for Retry-After.
func retryAfter(d time.Duration) string {
	return strconv.FormatInt(int64(max((d+time.Second-1)/time.Second, 1)), 10)
}

// waitText is a wait as the pages say it: "in 30 seconds", "in 15 minutes".
func waitText(d time.Duration) string {
	s := (d + time.Second - 1) / time.Second
	switch {
	case s <= 1:
		return "in a second"
	case s < 90:
		return fmt.Sprintf("in %d seconds", s)
	default:
		return fmt.Sprintf("in %d minutes", (s+59)/60)
	}
}

// tooMany answers 429 with Retry-After and a page saying how long to wait.
func (rl *realm) tooMany(w http.ResponseWriter, wait time.Duration, title, message, link string) {
	w.Header().Set("Retry-After", retryAfter(wait))
	w.Header().Set("Cache-Control", "no-store")
	d := pageData{Title: title, Message: message + " Try again " + waitText(wait) + "."}
	if link != "" {
		d.Link, d.LinkText = link, "Back to sign in"
	}
	rl.pages.message(w, http.StatusTooManyRequests, d)
}
