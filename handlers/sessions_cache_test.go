package handlers

import (
	"strconv"
	"testing"
	"time"
)

// The token cache never holds more than its bound, however many distinct
// sessions pass, and an entry is not served past its token's expiry.
func TestTokenCacheBound(t *testing.T) {
	now := time.Now()
	c := newTokenCache(100)
	for i := 0; i < 1000; i++ {
		c.put("token-"+strconv.Itoa(i), newTokenEntry(map[string]any{"sub": "u", "exp": float64(now.Add(time.Hour).Unix())}), now)
		if n := len(c.entries); n > 100 {
			t.Fatalf("after %d puts the cache holds %d entries, bound 100", i+1, n)
		}
	}
	c.put("expiring", newTokenEntry(map[string]any{"exp": float64(now.Add(time.Minute).Unix())}), now)
	if c.get("expiring", now) == nil {
		t.Fatal("a live entry is not served")
	}
	if c.get("expiring", now.Add(2*time.Minute)) != nil {
		t.Fatal("an entry is served past its token's expiry")
	}
}
