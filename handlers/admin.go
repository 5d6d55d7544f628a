package handlers

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/authgate/caddy-authgate/callbacks"
	"github.com/authgate/caddy-authgate/store"
)

// AdminConfig enables the session administration endpoints under
// <base_path>/admin/, for signed-in users who meet every condition.
type AdminConfig struct {
	// Require lists conditions over `session`, `token` and `request` that must all
	// hold, as in the site directive's `require`. At least one is needed.
	Require []callbacks.Condition `json:"require,omitempty"`
}

func compileAdmin(cfg *AdminConfig) ([]*callbacks.Check, error) {
	if cfg == nil {
		return nil, nil
	}
	if len(cfg.Require) == 0 {
		return nil, errors.New("admin: add at least one `require <condition>`, such as `require claim role admin`")
	}
	checks := make([]*callbacks.Check, len(cfg.Require))
	for i, c := range cfg.Require {
		chk, err := callbacks.CompileCheck(c, fmt.Sprintf("admin require #%d", i+1))
		if err != nil {
			return nil, err
		}
		checks[i] = chk
	}
	return checks, nil
}

// adminSession is the session of an administrator's request: nil, after
// answering, unless the user is signed in and meets every admin condition.
func (rl *realm) adminSession(w http.ResponseWriter, r *http.Request) *sessionState {
	st, ok := rl.endpointSession(w, r)
	if !ok {
		return nil
	}
	if st == nil {
		writeError(w, http.StatusUnauthorized, errSessionRequired)
		return nil
	}
	sess, err := st.session(r)
	if err != nil {
		writeError(w, http.StatusForbidden, errAccessDenied)
		return nil
	}
	vars := map[string]any{"session": sess, "token": st.claims(), "request": requestVars(r)}
	if ok, rule := requireHolds(rl.admin, vars, rl.logger); !ok {
		rl.requireRefused(r, rule, st.claims())
		writeError(w, http.StatusForbidden, errAccessDenied)
		return nil
	}
	return st
}

// adminSessions: GET /admin/sessions?user=<id> lists a user's sessions.
func (rl *realm) adminSessions(w http.ResponseWriter, r *http.Request) {
	if rl.adminSession(w, r) == nil {
		return
	}
	user := r.URL.Query().Get("user")
	if user == "" {
		writeError(w, http.StatusBadRequest, "user is required")
		return
	}
	list, err := rl.sessions.store.UserSessions(r.Context(), user)
	if err != nil {
		_ = unavailable(w, r, rl.pages, rl.logger, err)
		return
	}
	out := make([]map[string]any, 0, len(list))
	for _, s := range list {
		kind := "database"
		if strings.HasPrefix(s.ID, jwtPrefix) {
			kind = "jwt"
		}
		out = append(out, map[string]any{"id": s.ID, "kind": kind, "expires": s.Expires.UTC().Format(time.RFC3339)})
	}
	writeJSON(w, http.StatusOK, map[string]any{"user": user, "sessions": out})
}

// errBadRevoke is a revocation request that names nothing to revoke.
var errBadRevoke = errors.New("name the user, and optionally one of their sessions")

// adminRevoke: POST /admin/revoke with {"csrfToken", "user"} or {"csrfToken",
// "session"} ends those sessions on every instance.
func (rl *realm) adminRevoke(w http.ResponseWriter, r *http.Request) {
	st := rl.adminSession(w, r)
	if st == nil {
		return
	}
	var body struct {
		CSRFToken string `json:"csrfToken"`
		User      string `json:"user"`
		Session   string `json:"session"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxFormBytes)).Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, "invalid JSON body")
		return
	}
	if !rl.csrf.check(r, body.CSRFToken) {
		writeError(w, http.StatusForbidden, "invalid CSRF token")
		return
	}
	n, err := rl.revokeSessions(r, body.User, body.Session)
	if errors.Is(err, errBadRevoke) {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err != nil {
		rl.logger.Error("revoking sessions", zap.Error(err))
		writeError(w, http.StatusServiceUnavailable, errSessionUnavailable)
		return
	}
	rl.logger.Info("sessions revoked by an administrator", zap.Any("admin", st.claims()["sub"]), zap.String("user", body.User), zap.Int("count", n))
	writeJSON(w, http.StatusOK, map[string]any{"revoked": n})
}

// revokeSessions ends one session (by its id as listed) or all of a user's.
func (rl *realm) revokeSessions(r *http.Request, user, sessionID string) (int, error) {
	ctx := r.Context()
	var list []store.Session
	if user == "" {
		// A database session can be named alone; a jwt session is found through its user.
		if sessionID == "" || strings.HasPrefix(sessionID, jwtPrefix) {
			return 0, errBadRevoke
		}
		s, err := rl.sessions.store.GetSession(ctx, sessionID)
		if errors.Is(err, store.ErrNotFound) {
			return 0, nil
		}
		if err != nil {
			return 0, err
		}
		list = []store.Session{s}
	} else {
		all, err := rl.sessions.store.UserSessions(ctx, user)
		if err != nil {
			return 0, err
		}
		for _, s := range all {
			if sessionID == "" || s.ID == sessionID {
				list = append(list, s)
			}
		}
	}
	now := rl.sessions.now()
	var errs []error
	for _, s := range list {
		if sid, ok := strings.CutPrefix(s.ID, jwtPrefix); ok {
			if err := rl.sessions.revokeSID(ctx, sid, now); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		if err := rl.sessions.deleteDatabaseSession(ctx, s.ID); err != nil {
			errs = append(errs, err)
		}
	}
	return len(list), errors.Join(errs...)
}
