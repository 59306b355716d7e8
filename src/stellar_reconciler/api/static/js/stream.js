// The live connection: an EventSource on /api/stream. The browser reconnects by itself after
// a dropped connection; when the server refuses the stream (an HTTP error) EventSource gives
// up, so we retry here, more slowly each time, and say why.

const RETRY_MS = [1000, 2000, 5000, 10000];

// `url` is asked again for every connection (it may fetch a fresh ticket: it can be async).
export function connect({ url, onOpen, onSnapshot, onState }) {
  let source = null;
  let failures = 0;
  let timer = null;
  // Bumped by restart(), so an open() still waiting for its URL does not open a second source.
  let generation = 0;

  async function open() {
    const opening = generation;
    const target = await url();
    if (opening !== generation) return;
    source = new EventSource(target);
    source.onopen = () => {
      failures = 0;
      onState("live");
      onOpen();
    };
    source.onmessage = (message) => onSnapshot(JSON.parse(message.data));
    source.onerror = () => {
      if (source.readyState === EventSource.CONNECTING) {
        onState("reconnecting");
        return;
      }
      source.close();
      onState("refused");
      const delay = RETRY_MS[Math.min(failures, RETRY_MS.length - 1)];
      failures += 1;
      timer = setTimeout(open, delay);
    };
  }

  open();
  return {
    // Start over at once (a new token was entered, say).
    restart() {
      clearTimeout(timer);
      if (source) source.close();
      generation += 1;
      failures = 0;
      open();
    },
  };
}
