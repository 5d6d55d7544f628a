package handlers

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/authgate/caddy-authgate/store"
)

// healthTimeout bounds the store's health check: a load balancer asks often
// and must not wait long for "down".
const healthTimeout = 2 * time.Second

// healthKey is the claim the store check reads: a cheap read of a key that is
// never set, which every store answers with ErrNotFound when it works.
const healthKey = "health:check"

// readiness is implemented by providers that may be unusable for a while
// (OpenID Connect before its discovery succeeded).
type readiness interface {
	Ready() error
}

// health: GET /health, for load balancers: 200 {"status":"ok"}, or 503
// {"status":"unavailable","down":[…]} naming the parts that are down ("store",
// "provider <id>"). The reasons go to the log, not to the answer, which anyone
// may read; they are logged when the answer changes, not at every probe.
func (rl *realm) health(w http.ResponseWriter, r *http.Request) {
	down, reasons := rl.checkHealth(r.Context())
	rl.healthLog.report(rl.logger, down, reasons)
	if len(down) == 0 {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
		return
	}
	w.Header().Set("Retry-After", "5")
	writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "unavailable", "down": down})
}

// checkHealth lists what is down, in a stable order, and why.
func (rl *realm) checkHealth(ctx context.Context) ([]string, []error) {
	var down []string
	var reasons []error
	if err := rl.checkStore(ctx); err != nil {
		down, reasons = append(down, "store"), append(reasons, err)
	}
	for _, p := range rl.providers.list {
		if rp, ok := p.(readiness); ok {
			if err := rp.Ready(); err != nil {
				down, reasons = append(down, "provider "+p.ID()), append(reasons, err)
			}
		}
	}
	return down, reasons
}

// checkStore asks the store something cheap.
func (rl *realm) checkStore(ctx context.Context) error {
	if !rl.started.Load() {
		return errNotStarted
	}
	ctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	_, err := rl.sessions.store.GetClaim(ctx, healthKey)
	if err == nil || errors.Is(err, store.ErrNotFound) {
		return nil
	}
	return err
}

// healthLog remembers the last answer, so that a change is logged once.
type healthLog struct {
	mu   sync.Mutex
	last string
}

func (h *healthLog) report(logger *zap.Logger, down []string, reasons []error) {
	key := strings.Join(down, ";")
	h.mu.Lock()
	changed := key != h.last
	h.last = key
	h.mu.Unlock()
	if !changed {
		return
	}
	if len(down) == 0 {
		logger.Info("health: everything is up again")
		return
	}
	logger.Warn("health: unavailable", zap.Strings("down", down), zap.Errors("reasons", reasons))
}
