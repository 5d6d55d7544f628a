package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"time"

	"github.com/redis/go-redis/v9"
)

// How a Redis subscription keeps its connection (variables so that tests can
// shorten them).
var (
	// pubsubPingEvery: after this long without a word from the server, the
	// subscriber PINGs it; after as long again, it gives the connection up.
	pubsubPingEvery = 5 * time.Second
	// subscribeTimeout bounds the wait for the first subscription's
	// confirmation (as does the context's deadline).
	subscribeTimeout = 10 * time.Second
	// The wait between reconnection attempts doubles from pubsubBackoffMin to
	// pubsubBackoffMax (each wait is randomised over its upper half, so that
	// instances do not reconnect in lockstep).
	pubsubBackoffMin = 50 * time.Millisecond
	pubsubBackoffMax = time.Second
)

// A subscriber reads one channel for Redis.Subscribe.
//
// go-redis's PubSub reconnects by itself: when a read or write fails, it
// dials again and re-sends SUBSCRIBE, and the server confirms with a
// "subscribe" reply, which Receive returns as a *redis.Subscription before any
// message on the new connection. The first confirmation is consumed before
// listen starts, so every "subscribe" confirmation listen sees marks a new
// connection: messages may have been lost, and listen calls onResync.
//
// A connection whose peer vanished without closing it fails no read: listen
// PINGs when the server has been silent for pingEvery, and when the silence
// lasts another pingEvery, it replaces the PubSub with a new one, whose
// confirmation triggers onResync the same way.
//
// On a Redis Cluster, the subscription is on the master of the channel's hash
// slot (go-redis picks it), and it hears what is published on any node. When
// that master dies, go-redis reconnects to the master the cluster's layout
// names for the slot, which listen asks it to read again after each failure:
// the subscription is on the promoted replica as soon as the cluster has
// promoted it, and onResync follows.
type subscriber struct {
	r         *Redis
	ctx       context.Context
	channel   string
	onMessage func(string)
	onResync  func()
	pingEvery time.Duration

	ps        *redis.PubSub
	stopClose func() bool // cancels the closing of ps when ctx ends
}

// subscribe is Subscribe, also returning a channel closed when the background
// goroutine has returned (for tests).
func (r *Redis) subscribe(ctx context.Context, topic string, onMessage func(string), onResync func()) (<-chan struct{}, error) {
	s := &subscriber{
		r: r, ctx: ctx, channel: r.eventsChannel(topic),
		onMessage: onMessage, onResync: onResync, pingEvery: pubsubPingEvery,
	}
	s.open()
	if err := s.confirmed(); err != nil {
		s.close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("subscribing to redis channel %s: %w", s.channel, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer s.close()
		s.listen()
	}()
	return done, nil
}

// open starts a new PubSub, which is closed when ctx ends (unblocking a read).
// A failure to connect shows in the next read.
func (s *subscriber) open() {
	ps := s.r.c.Subscribe(s.ctx, s.channel)
	s.ps = ps
	s.stopClose = context.AfterFunc(s.ctx, func() { _ = ps.Close() })
}

func (s *subscriber) close() {
	s.stopClose()
	_ = s.ps.Close()
}

// confirmed waits for the server to confirm the subscription.
func (s *subscriber) confirmed() error {
	for {
		m, err := s.ps.ReceiveTimeout(s.ctx, subscribeTimeout)
		if err != nil {
			return err
		}
		if sub, ok := m.(*redis.Subscription); ok && sub.Kind == "subscribe" {
			return nil
		}
	}
}

// listen delivers messages until ctx ends or the store is closed.
func (s *subscriber) listen() {
	var backoff time.Duration
	pinged := false // a PING is unanswered
	for {
		m, err := s.ps.ReceiveTimeout(s.ctx, s.pingEvery)
		if s.ctx.Err() != nil {
			return // a message read after ctx ended is dropped
		}
		if err == nil {
			pinged, backoff = false, 0
			switch m := m.(type) {
			case *redis.Subscription:
				if m.Kind == "subscribe" && s.onResync != nil {
					s.onResync() // a new connection: see subscriber
				}
			case *redis.Message:
				if s.onMessage != nil {
					s.onMessage(m.Payload)
				}
			}
			continue
		}
		switch {
		case errors.Is(err, redis.ErrClosed):
			return // the store was closed: no new connection can be made
		case isTimeout(err) && !pinged:
			if s.ps.Ping(s.ctx) == nil {
				pinged = true
				continue
			}
			// The PING could not be sent: go-redis reconnects.
		case isTimeout(err):
			// No answer to the PING: give the connection up.
			s.r.reloadLayout(s.ctx)
			s.close()
			s.open()
			pinged = false
			continue
		}
		s.r.reloadLayout(s.ctx)
		pinged = false
		backoff = min(max(2*backoff, pubsubBackoffMin), pubsubBackoffMax)
		if !sleep(s.ctx, backoff/2+rand.N(backoff/2)) {
			return
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// sleep waits for d, or until ctx ends (reporting false).
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
