package store

import (
	"context"
	"time"
)

// SubscribeDone is Redis.Subscribe, also returning a channel closed when its
// background goroutine has returned.
func SubscribeDone(r *Redis, ctx context.Context, topic string, onMessage func(string), onResync func()) (<-chan struct{}, error) {
	return r.subscribe(ctx, topic, onMessage, onResync)
}

// SetPubSubPingEvery makes subscriptions started until restore PING a silent
// server after d.
func SetPubSubPingEvery(d time.Duration) (restore func()) {
	old := pubsubPingEvery
	pubsubPingEvery = d
	return func() { pubsubPingEvery = old }
}
