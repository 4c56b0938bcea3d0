// A Linux eventfd used as a doorbell: one side signals, the other side's event loop watches fd()
// and consumes. signal() may be called from any thread (and a signal handler) and never blocks.
#pragma once

namespace vsnd {

class EventFd {
public:
    EventFd(); // non-blocking, close-on-exec; throws std::system_error
    ~EventFd();
    EventFd(const EventFd&) = delete;
    EventFd& operator=(const EventFd&) = delete;
    int fd() const { return fd_; }
    void signal() const;
    bool consume() const; // non-blocking: true if it had been signalled

private:
    int fd_;
};

// One pollable fd for several: readable while any member fd is readable (an epoll instance,
// level-triggered). A transport's four call eventfds become one interrupt fd this way.
class ReadableSet {
public:
    ReadableSet(); // throws std::system_error
    ~ReadableSet();
    ReadableSet(const ReadableSet&) = delete;
    ReadableSet& operator=(const ReadableSet&) = delete;
    void add(int fd); // throws std::system_error; the caller keeps `fd` open while it is a member
    int fd() const { return fd_; }

private:
    int fd_;
};

} // namespace vsnd
