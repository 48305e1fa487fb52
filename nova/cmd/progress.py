"""Progress of long steps (image import and fetch) on a terminal."""

import sys

from nova.cmd import output


class Progress:
    """One status line on stderr, only when stderr is a terminal."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self._shown = False

    def step(self, message):
        if self.enabled:
            self.stream.write('\r\x1b[K%s' % message)
            self.stream.flush()
            self._shown = True

    def bytes_callback(self, label):
        """A ``callback(done, total)`` showing a percentage (redrawn
        when it changes, not on every chunk)."""
        last = [None]

        def report(done, total):
            if total:
                percent = done * 100 // total
                if percent != last[0]:
                    last[0] = percent
                    self.step('%s: %3d%% (%s of %s)' % (
                        label, percent, output.human(done),
                        output.human(total)))
            else:
                self.step('%s: %s' % (label, output.human(done)))
        return report

    def done(self):
        if self._shown:
            self.stream.write('\r\x1b[K')
            self.stream.flush()
            self._shown = False


class ProgressImageAPI:
    """The image API, reporting download progress (a fetch into the
    cache) on a Progress line. Everything else passes through."""

    def __init__(self, api, progress):
        self._api = api
        self._progress = progress

    def __getattr__(self, name):
        return getattr(self._api, name)

    def download(self, context, image_id):
        total = self._api.get(context, image_id).get('size')
        chunks = self._api.download(context, image_id)
        report = self._progress.bytes_callback('fetching image %s' %
                                               image_id)

        def counted():
            done = 0
            try:
                for chunk in chunks:
                    done += len(chunk)
                    report(done, total)
                    yield chunk
            finally:
                close = getattr(chunks, 'close', None)
                if close is not None:
                    close()
        return counted()
