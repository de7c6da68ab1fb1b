package kvstore

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/apiserver/pkg/features"
	"k8s.io/apiserver/pkg/storage"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	utilflowcontrol "k8s.io/apiserver/pkg/util/flowcontrol"
)

const outgoingBufSize = 100

// watchChan is one storage watch. The index pushes matching events into its
// queue (never blocking the consumer that feeds every replica's index); its
// own goroutine decodes, filters and delivers them.
type watchChan struct {
	s         *Store
	key       string
	recursive bool
	pred      storage.SelectionPredicate
	startRev  uint64 // deliver events after this revision

	ctx    context.Context
	cancel context.CancelFunc
	result chan watch.Event

	mu       sync.Mutex
	queue    []*event
	overflow bool
	expired  bool
	signal   chan struct{}
}

func (w *watchChan) matches(key string) bool {
	if w.recursive {
		return strings.HasPrefix(key, w.key)
	}
	return key == w.key
}

// push is called with the index lock held: it must not block. A watcher that
// falls more than maxBacklog events behind is ended with an error rather
// than allowed to grow memory without bound; its client resumes from the
// last resourceVersion it saw.
func (w *watchChan) push(ev *event) {
	w.mu.Lock()
	if len(w.queue) >= w.s.maxBacklog {
		w.overflow = true
	} else {
		w.queue = append(w.queue, ev)
	}
	w.mu.Unlock()
	select {
	case w.signal <- struct{}{}:
	default:
	}
}

// expire ends the watch with 410 Gone once the events already queued are
// delivered (called with the index lock held).
func (w *watchChan) expire() {
	w.mu.Lock()
	w.expired = true
	w.mu.Unlock()
	select {
	case w.signal <- struct{}{}:
	default:
	}
}

func (w *watchChan) pop() (ev *event, overflow, expired bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.queue) > 0 {
		ev = w.queue[0]
		w.queue[0] = nil
		w.queue = w.queue[1:]
		return ev, false, false
	}
	return nil, w.overflow, w.expired
}

func (w *watchChan) Stop()                          { w.cancel() }
func (w *watchChan) ResultChan() <-chan watch.Event { return w.result }

func (s *Store) watch(ctx context.Context, key string, rev uint64, opts storage.ListOptions) (watch.Interface, error) {
	if opts.ProgressNotify && s.newFunc == nil {
		return nil, apierrors.NewInternalError(errors.New("progressNotify for watch is unsupported because no newFunc was provided"))
	}
	watchList := utilfeature.DefaultFeatureGate.Enabled(features.WatchList)
	sendInitial := opts.SendInitialEvents != nil && *opts.SendInitialEvents
	startRev := rev
	if rev == 0 && watchList && opts.SendInitialEvents != nil && !sendInitial {
		// Only a stream of changes from "now" is wanted.
		cur, err := s.b.currentRev(ctx)
		if err != nil {
			return nil, err
		}
		startRev = cur
	}
	initial := (opts.SendInitialEvents == nil && startRev == 0) || (watchList && sendInitial)
	endBookmark := watchList && sendInitial && opts.Predicate.AllowWatchBookmarks

	w := &watchChan{
		s:         s,
		key:       key,
		recursive: opts.Recursive,
		pred:      opts.Predicate,
		startRev:  startRev,
		result:    make(chan watch.Event, outgoingBufSize),
		signal:    make(chan struct{}, 1),
	}
	if w.pred.Empty() {
		w.pred = storage.Everything
	}
	w.ctx, w.cancel = context.WithCancel(ctx)
	go w.run(rev, initial, endBookmark)
	// Events come from memory right away; there is no lagging catch-up.
	utilflowcontrol.WatchInitialized(ctx)
	return w, nil
}

func (w *watchChan) run(requestedRev uint64, initial, endBookmark bool) {
	defer close(w.result)
	defer w.cancel()
	idx := w.s.b.idx

	var snapshot []keyRecord
	if initial {
		cur, err := w.s.b.sync(w.ctx)
		if err != nil {
			w.sendError(err)
			return
		}
		if requestedRev > cur {
			w.sendError(storage.NewTooLargeResourceVersionError(requestedRev, cur, 1))
			return
		}
		if snapshot, err = idx.register(w, true); err != nil {
			return // shutting down: the client rewatches elsewhere
		}
	} else if _, err := idx.register(w, false); errors.Is(err, errStopped) {
		return
	} else if err != nil {
		w.sendError(apierrors.NewResourceExpired("The resourceVersion for the provided watch is too old."))
		return
	}
	defer idx.unregister(w)

	for _, kr := range snapshot {
		obj, err := w.decodeRecord(kr.key, kr.value, kr.modRev)
		if err != nil {
			w.sendError(err)
			return
		}
		if w.filter(obj) && !w.send(watch.Event{Type: watch.Added, Object: obj}) {
			return
		}
	}
	if endBookmark {
		obj := w.s.newFunc()
		if err := w.s.versioner.UpdateObject(obj, w.startRev); err != nil {
			w.sendError(fmt.Errorf("bookmark resource version: %w", err))
			return
		}
		if err := storage.AnnotateInitialEventsEndBookmark(obj); err != nil {
			w.sendError(err)
			return
		}
		if !w.send(watch.Event{Type: watch.Bookmark, Object: obj}) {
			return
		}
	}

	for {
		ev, overflow, expired := w.pop()
		if expired {
			w.sendError(apierrors.NewResourceExpired("The resourceVersion for the provided watch is too old."))
			return
		}
		if overflow {
			w.sendError(&apierrors.StatusError{ErrStatus: metav1.Status{
				Status:  metav1.StatusFailure,
				Code:    http.StatusInternalServerError,
				Reason:  metav1.StatusReasonInternalError,
				Message: fmt.Sprintf("watch of %s fell more than %d events behind; resume from the last resourceVersion received", w.s.groupResource, w.s.maxBacklog),
			}})
			return
		}
		if ev == nil {
			select {
			case <-w.signal:
				continue
			case <-w.ctx.Done():
				return
			}
		}
		res, err := w.transform(ev)
		if err != nil {
			w.sendError(err)
			return
		}
		if res != nil && !w.send(*res) {
			return
		}
	}
}

func (w *watchChan) decodeRecord(key string, value []byte, rev uint64) (runtime.Object, error) {
	data, _, err := w.s.xf().TransformFromStorage(w.ctx, value, authenticatedDataString(key))
	if err != nil {
		return nil, err
	}
	obj, err := runtime.Decode(w.s.codec, data)
	if err != nil {
		return nil, err
	}
	if err := w.s.versioner.UpdateObject(obj, rev); err != nil {
		return nil, fmt.Errorf("failure to version api object (%d): %w", rev, err)
	}
	return obj, nil
}

func (w *watchChan) filter(obj runtime.Object) bool {
	matched, err := w.pred.Matches(obj)
	return err == nil && matched
}

// transform turns a change into what this watcher reports, as etcd3's
// watcher does: a change that moves an object into or out of the selector
// is an ADDED or DELETED event; the old object of a deletion carries the
// deletion's revision.
func (w *watchChan) transform(ev *event) (*watch.Event, error) {
	var cur, old runtime.Object
	var err error
	if !ev.deleted {
		if cur, err = w.decodeRecord(ev.key, ev.value, ev.rev); err != nil {
			return nil, err
		}
	}
	acceptAll := w.pred.Empty()
	if ev.prev != nil && (ev.deleted || !acceptAll) {
		if old, err = w.decodeRecord(ev.key, ev.prev.value, ev.rev); err != nil {
			return nil, err
		}
	}
	switch {
	case ev.deleted:
		if !w.filter(old) {
			return nil, nil
		}
		return &watch.Event{Type: watch.Deleted, Object: old}, nil
	case ev.prev == nil:
		if !w.filter(cur) {
			return nil, nil
		}
		return &watch.Event{Type: watch.Added, Object: cur}, nil
	case acceptAll:
		return &watch.Event{Type: watch.Modified, Object: cur}, nil
	}
	curPasses, oldPasses := w.filter(cur), w.filter(old)
	switch {
	case curPasses && oldPasses:
		return &watch.Event{Type: watch.Modified, Object: cur}, nil
	case curPasses:
		return &watch.Event{Type: watch.Added, Object: cur}, nil
	case oldPasses:
		return &watch.Event{Type: watch.Deleted, Object: old}, nil
	}
	return nil, nil
}

func (w *watchChan) send(ev watch.Event) bool {
	select {
	case w.result <- ev:
		return true
	case <-w.ctx.Done():
		return false
	}
}

// sendError delivers err as the watch's last event.
func (w *watchChan) sendError(err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	if _, ok := err.(apierrors.APIStatus); !ok {
		err = apierrors.NewInternalError(err)
	}
	status := err.(apierrors.APIStatus).Status()
	select {
	case w.result <- watch.Event{Type: watch.Error, Object: &status}:
	case <-w.ctx.Done():
	}
}
