#ifndef RELAY_COMMON_METRICS_H_
#define RELAY_COMMON_METRICS_H_

// A small Prometheus registry: counters and gauges with labels, rendered in the text
// exposition format (Debian has no prometheus-cpp). Metrics are declared once, as typed
// handles with their label names (as Envoy declares ALL_SSL_STATS); a series can only
// be set through its family's handle, so an undeclared or misspelt metric does not
// compile, and a series with the wrong labels is refused at the call.

#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"

namespace relay {

class Metrics;

// One metric family: a name, its help, its label names, and a value per label set.
class MetricFamily {
 public:
  MetricFamily(const MetricFamily&) = delete;
  MetricFamily& operator=(const MetricFamily&) = delete;

  const std::string& name() const { return name_; }
  // The value of the series with these label values (in the declared order); 0 when
  // it has none.
  double Value(const std::vector<std::string>& label_values = {}) const;
  // Drops one series (a cluster that is gone).
  void Remove(const std::vector<std::string>& label_values = {});

 protected:
  MetricFamily(Metrics* registry, std::string name, std::vector<std::string> label_names)
      : registry_(registry), name_(std::move(name)), label_names_(std::move(label_names)) {}
  void Update(const std::vector<std::string>& label_values, double value, bool add);

 private:
  friend class Metrics;
  std::string SeriesKey(const std::vector<std::string>& label_values) const;

  Metrics* const registry_;
  const std::string name_;
  const std::vector<std::string> label_names_;
};

class Counter : public MetricFamily {
 public:
  void Increment(const std::vector<std::string>& label_values = {}, double by = 1) {
    Update(label_values, by, true);
  }
  // A series that shows 0 before anything is counted.
  void Touch(const std::vector<std::string>& label_values = {}) { Update(label_values, 0, true); }

 private:
  friend class Metrics;
  using MetricFamily::MetricFamily;
};

class Gauge : public MetricFamily {
 public:
  void Set(double value) { Update({}, value, false); }
  void Set(const std::vector<std::string>& label_values, double value) { Update(label_values, value, false); }

 private:
  friend class Metrics;
  using MetricFamily::MetricFamily;
};

class Metrics {
 public:
  Metrics() = default;
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // Declares a family. The handle lives as long as the registry. Declaring a name twice
  // gives the first declaration's handle (the agent and its built-in rotator share one
  // registry and both declare the client certificate's expiry).
  Counter& AddCounter(const std::string& name, const std::string& help, std::vector<std::string> label_names = {});
  Gauge& AddGauge(const std::string& name, const std::string& help, std::vector<std::string> label_names = {});

  std::string Render() const;

 private:
  friend class MetricFamily;
  struct Family {
    std::string type;
    std::string help;
    std::map<std::string, double> series;  // rendered label set -> value
  };
  template <typename T>
  T& Declare(const std::string& name, const std::string& type, const std::string& help,
             std::vector<std::string> label_names);

  mutable absl::Mutex mu_;
  std::map<std::string, Family> families_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, MetricFamily*> handles_ ABSL_GUARDED_BY(mu_);
  std::deque<std::unique_ptr<MetricFamily>> owned_ ABSL_GUARDED_BY(mu_);
};

}  // namespace relay

#endif  // RELAY_COMMON_METRICS_H_
