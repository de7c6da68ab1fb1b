package kvstore

import (
	"testing"

	storagetesting "k8s.io/apiserver/pkg/storage/testing"
)

func TestWatch(t *testing.T) {
	t.Run("Watch", func(t *testing.T) {
		ctx, s := newTestStore(t)
		storagetesting.RunTestWatch(ctx, t, s)
	})
	t.Run("ClusterScopedWatch", func(t *testing.T) {
		ctx, s := newTestStore(t)
		storagetesting.RunTestClusterScopedWatch(ctx, t, s)
	})
	t.Run("NamespaceScopedWatch", func(t *testing.T) {
		ctx, s := newTestStore(t)
		storagetesting.RunTestNamespaceScopedWatch(ctx, t, s)
	})
	t.Run("DeleteTriggerWatch", func(t *testing.T) {
		ctx, s := newTestStore(t)
		storagetesting.RunTestDeleteTriggerWatch(ctx, t, s)
	})
	t.Run("WatchFromZero", func(t *testing.T) {
		ctx, s := newTestStore(t)
		storagetesting.RunTestWatchFromZero(ctx, t, s, compaction(s))
	})
	t.Run("WatchFromNonZero", func(t *testing.T) {
		ctx, s := newTestStore(t)
		storagetesting.RunTestWatchFromNonZero(ctx, t, s)
	})
	t.Run("DelayedWatchDelivery", func(t *testing.T) {
		ctx, s := newTestStore(t)
		storagetesting.RunTestDelayedWatchDelivery(ctx, t, s)
	})
	t.Run("WatchError", func(t *testing.T) {
		ctx, s := newTestStore(t)
		storagetesting.RunTestWatchError(ctx, t, s)
	})
	t.Run("WatchContextCancel", func(t *testing.T) {
		ctx, s := newTestStore(t)
		storagetesting.RunTestWatchContextCancel(ctx, t, s)
	})
	t.Run("WatcherTimeout", func(t *testing.T) {
		ctx, s := newTestStore(t)
		storagetesting.RunTestWatcherTimeout(ctx, t, s)
	})
	t.Run("WatchDeleteEventObjectHaveLatestRV", func(t *testing.T) {
		ctx, s := newTestStore(t)
		storagetesting.RunTestWatchDeleteEventObjectHaveLatestRV(ctx, t, s)
	})
	t.Run("WatchInitializationSignal", func(t *testing.T) {
		ctx, s := newTestStore(t)
		storagetesting.RunTestWatchInitializationSignal(ctx, t, s)
	})
	// Not run: RunOptionalTestProgressNotify. Progress notifications exist
	// for the watch cache, which this store does not sit behind.
	t.Run("WatchDispatchBookmarkEvents", func(t *testing.T) {
		ctx, s := newTestStore(t)
		storagetesting.RunTestWatchDispatchBookmarkEvents(ctx, t, s, false)
	})
	t.Run("SendInitialEventsBackwardCompatibility", func(t *testing.T) {
		ctx, s := newTestStore(t)
		storagetesting.RunSendInitialEventsBackwardCompatibility(ctx, t, s)
	})
	t.Run("WatchSemantics", func(t *testing.T) {
		ctx, s := newTestStore(t)
		storagetesting.RunWatchSemantics(ctx, t, s)
	})
	t.Run("WatchSemanticInitialEventsExtended", func(t *testing.T) {
		ctx, s := newTestStore(t)
		storagetesting.RunWatchSemanticInitialEventsExtended(ctx, t, s)
	})
	t.Run("WatchListMatchSingle", func(t *testing.T) {
		ctx, s := newTestStore(t)
		storagetesting.RunWatchListMatchSingle(ctx, t, s)
	})
	t.Run("WatchErrorEventIsBlockingFurtherEvent", func(t *testing.T) {
		ctx, s := newTestStore(t)
		storagetesting.RunWatchErrorIsBlockingFurtherEvents(ctx, t, s)
	})
}
