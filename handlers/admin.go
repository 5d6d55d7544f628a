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

// serveAdmin: GET /admin/sessions?user=<id> lists a user's sessions; POST
// /admin/revoke with {"csrfToken", "user"} or {"csrfToken", "session"} ends them
// on every instance.
func (rl *realm) serveAdmin(w http.ResponseWriter, r *http.Request, arg string) {
	if rl.admin == nil {
		rl.renderPage(w, http.StatusNotFound, pageData{Title: "Not found", Message: "There is no sign-in page at this address."})
		return
	}
	st, ok := rl.endpointSession(w, r)
	if !ok {
		return
	}
	if st == nil {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": errSessionRequired})
		return
	}
	sess, err := st.session(r)
	if err != nil {
		writeJSON(w, http.StatusForbidden, map[string]string{"error": errAccessDenied})
		return
	}
	vars := map[string]any{"session": sess, "token": st.token, "request": requestVars(r)}
	for _, chk := range rl.admin {
		if ok, err := chk.Holds(vars); !ok {
			if err != nil {
				rl.logger.Error("admin require failed", zap.Error(err))
			}
			writeJSON(w, http.StatusForbidden, map[string]string{"error": errAccessDenied})
			return
		}
	}
	ctx := r.Context()
	switch {
	case arg == "sessions" && r.Method == http.MethodGet:
		user := r.URL.Query().Get("user")
		if user == "" {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "user is required"})
			return
		}
		list, err := rl.store.UserSessions(ctx, user)
		if err != nil {
			_ = rl.unavailable(w, r, err)
			return
		}
		out := make([]map[string]any, 0, len(list))
		for _, s := range list {
			kind := "database"
			if strings.HasPrefix(s.ID, "jwt:") {
				kind = "jwt"
			}
			out = append(out, map[string]any{"id": s.ID, "kind": kind, "expires": s.Expires.UTC().Format(time.RFC3339)})
		}
		writeJSON(w, http.StatusOK, map[string]any{"user": user, "sessions": out})
	case arg == "revoke" && r.Method == http.MethodPost:
		var body struct {
			CSRFToken string `json:"csrfToken"`
			User      string `json:"user"`
			Session   string `json:"session"`
		}
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxFormBytes)).Decode(&body); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid JSON body"})
			return
		}
		if !rl.checkCSRFToken(r, body.CSRFToken) {
			writeJSON(w, http.StatusForbidden, map[string]string{"error": "invalid CSRF token"})
			return
		}
		n, err := rl.revokeSessions(r, body.User, body.Session)
		if err != nil {
			rl.logger.Error("revoking sessions", zap.Error(err))
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "SessionUnavailable"})
			return
		}
		rl.logger.Info("sessions revoked by an administrator", zap.Any("admin", st.token["sub"]), zap.String("user", body.User), zap.Int("count", n))
		writeJSON(w, http.StatusOK, map[string]any{"revoked": n})
	default:
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not found"})
	}
}

// revokeSessions ends one session (by its id as listed) or all of a user's.
func (rl *realm) revokeSessions(r *http.Request, user, sessionID string) (int, error) {
	ctx := r.Context()
	var list []store.Session
	if user == "" {
		// A database session can be named alone; a jwt session is found through its user.
		if sessionID == "" || strings.HasPrefix(sessionID, "jwt:") {
			return 0, errors.New("name the user, and optionally one of their sessions")
		}
		s, err := rl.store.GetSession(ctx, sessionID)
		if errors.Is(err, store.ErrNotFound) {
			return 0, nil
		}
		if err != nil {
			return 0, err
		}
		list = []store.Session{s}
	} else {
		all, err := rl.store.UserSessions(ctx, user)
		if err != nil {
			return 0, err
		}
		for _, s := range all {
			if sessionID == "" || s.ID == sessionID {
				list = append(list, s)
			}
		}
	}
	now := rl.now()
	var errs []error
	for _, s := range list {
		if sid, ok := strings.CutPrefix(s.ID, "jwt:"); ok {
			if err := rl.revokeSID(ctx, sid, now); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		// A database session is deleted before the caches hear of it: an
		// instance that dropped it from its cache and read it again before the
		// deletion would cache it for another databaseCacheTTL.
		if err := rl.store.DeleteSession(ctx, s.ID); err != nil {
			errs = append(errs, err)
		}
		rl.cache.remove(s.ID)
		rl.broadcast(ctx, "session "+s.ID)
	}
	return len(list), errors.Join(errs...)
}
