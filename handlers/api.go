package handlers

import (
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"net/url"

	"go.uber.org/zap"

	"github.com/authgate/caddy-authgate/callbacks"
)

// endpointSession reads the request's session for an endpoint: when the store
// cannot be asked it answers 503 itself and reports false; st is nil when
// signed out.
func (rl *realm) endpointSession(w http.ResponseWriter, r *http.Request) (st *sessionState, ok bool) {
	st, err := rl.sessions.read(w, r, rl.cb)
	if err != nil {
		_ = unavailable(w, r, rl.pages, rl.logger, err)
		return nil, false
	}
	return st, true
}

// csrfJSON: GET /csrf.
func (rl *realm) csrfJSON(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"csrfToken": rl.csrf.token(w, r)})
}

// sessionJSON: GET /session.
func (rl *realm) sessionJSON(w http.ResponseWriter, r *http.Request) {
	st, ok := rl.endpointSession(w, r)
	if !ok {
		return
	}
	if st == nil {
		writeJSON(w, http.StatusOK, map[string]any{})
		return
	}
	if st.entry.failedRefresh {
		// Signed out, and the client may learn why (Auth.js's refresh guide).
		writeJSON(w, http.StatusOK, map[string]any{"error": errRefresh})
		return
	}
	writeSessionJSON(w, r, st, rl.logger)
}

// writeSessionJSON answers with the session, or {} (signed out) when the
// session callback fails: a client must never take a broken session for a good one.
func writeSessionJSON(w http.ResponseWriter, r *http.Request, st *sessionState, logger *zap.Logger) {
	sess, err := st.session(r)
	if err != nil {
		logger.Error("session callback failed; answering as signed out", zap.Error(err))
		writeJSON(w, http.StatusOK, map[string]any{})
		return
	}
	writeJSON(w, http.StatusOK, sess)
}

// updateSession: POST /session, Auth.js's update(data). The body is JSON
// {"csrfToken": …, "data": …} or a form with csrfToken and data (JSON). The jwt
// callback runs with trigger "update" and session = data; the cookie is re-issued.
func (rl *realm) updateSession(w http.ResponseWriter, r *http.Request) {
	var body struct {
		CSRFToken string `json:"csrfToken"`
		Data      any    `json:"data"`
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == "application/json" {
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxFormBytes))
		if err := dec.Decode(&body); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid JSON body"})
			return
		}
	} else {
		if err := parseForm(w, r); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid form body"})
			return
		}
		body.CSRFToken = r.PostForm.Get("csrfToken")
		if d := r.PostForm.Get("data"); d != "" {
			if err := json.Unmarshal([]byte(d), &body.Data); err != nil {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": "data is not JSON"})
				return
			}
		}
	}
	if !rl.csrf.check(r, body.CSRFToken) {
		rl.logger.Warn("POST without a valid CSRF token refused", zap.String("path", r.URL.Path))
		writeJSON(w, http.StatusForbidden, map[string]string{"error": "invalid CSRF token"})
		return
	}
	st, ok := rl.endpointSession(w, r)
	if !ok {
		return
	}
	if st == nil {
		writeJSON(w, http.StatusOK, map[string]any{})
		return
	}
	claims, err := rl.cb.JWT(r.Context(), callbacks.JWTInput{Token: st.claims(), Trigger: "update", Session: body.Data, Request: requestVars(r)})
	if err != nil {
		rl.logger.Error("jwt callback failed on session update", zap.Error(err))
		writeError(w, http.StatusForbidden, errConfiguration)
		return
	}
	if err := rl.sessions.update(w, r, st, claims); err != nil {
		if errors.Is(err, errTokenTooLarge) {
			rl.logger.Info("session update refused: too large; the session is kept", zap.Any("user_id", st.claims()["sub"]), zap.Error(err))
			writeError(w, http.StatusRequestEntityTooLarge, "SessionTooLarge")
			return
		}
		rl.logger.Error("storing the updated session", zap.Error(err))
		if rl.sessions.database {
			writeError(w, http.StatusServiceUnavailable, errSessionUnavailable)
		} else {
			writeError(w, http.StatusForbidden, errConfiguration)
		}
		return
	}
	rl.sessionUpdated(claims)
	updated := &sessionState{cb: rl.cb, token: claims, expires: rl.sessions.now().Add(rl.sessions.maxAge)}
	if st.entry != nil && st.entry.user() != nil {
		// A database session's callback sees the stored user, here as on GET.
		updated.entry = &tokenEntry{claims: claims, db: &dbRecord{user: st.entry.user()}, expires: updated.expires.UnixNano()}
	}
	st = updated
	writeSessionJSON(w, r, st, rl.logger)
}

// verify: GET /verify, the answer for another proxy's forward-auth request:
// 200 with the identity headers of the site handler it is served through (its
// `header` lines, or the defaults), 403 when its `require` lines do not hold,
// 401 without a session.
func (rl *realm) verify(w http.ResponseWriter, r *http.Request, h *Handler) {
	st, ok := rl.endpointSession(w, r)
	if !ok {
		return
	}
	if st == nil || st.entry.failedRefresh {
		rl.metrics.decide(decisionUnauthenticated)
		writeError(w, http.StatusUnauthorized, errSessionRequired)
		return
	}
	v := h.view(st, r)
	if !v.allowed {
		rl.requireRefused(r, v.refusedBy, st.claims())
		rl.metrics.decide(decisionForbidden)
		writeError(w, http.StatusForbidden, errAccessDenied)
		return
	}
	for _, hv := range v.headers {
		w.Header()[hv.name] = hv.value
	}
	rl.metrics.decide(decisionAllowed)
	w.WriteHeader(http.StatusOK)
}

// jwks: GET /jwks.json, the public keys of the upstream assertions.
func (rl *realm) jwks(w http.ResponseWriter) {
	b, err := rl.asserter.JWKS()
	if err != nil {
		rl.logger.Error("encoding the key set", zap.Error(err))
		writeError(w, http.StatusInternalServerError, errConfiguration)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/jwk-set+json")
	h.Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(b)
}

// providersJSON: GET /providers, in Auth.js's shape.
func (rl *realm) providersJSON(w http.ResponseWriter, r *http.Request) {
	base := rl.origin.base(r).String() + rl.basePath
	out := make(map[string]any, len(rl.providers.list))
	for _, p := range rl.providers.list {
		out[p.ID()] = map[string]string{
			"id":          p.ID(),
			"name":        p.Name(),
			"type":        p.Type(),
			"signinUrl":   base + "/signin/" + url.PathEscape(p.ID()),
			"callbackUrl": base + "/callback/" + url.PathEscape(p.ID()),
		}
	}
	writeJSON(w, http.StatusOK, out)
}
