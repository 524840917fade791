#ifndef RELAY_COMMON_METRICS_H_
#define RELAY_COMMON_METRICS_H_

// A small Prometheus registry: counters and gauges with labels, rendered in the text
// exposition format. (Debian has no prometheus-cpp.)

#include <map>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace relay {

using MetricLabels = std::vector<std::pair<std::string, std::string>>;

class Metrics {
 public:
  // Declares a family; `type` is "counter" or "gauge".
  void Describe(const std::string& name, const std::string& type, const std::string& help);

  void Add(const std::string& name, const MetricLabels& labels, double delta = 1);
  void Set(const std::string& name, const MetricLabels& labels, double value);
  // Drops one labelled series (a cluster that is gone).
  void Remove(const std::string& name, const MetricLabels& labels);
  double Get(const std::string& name, const MetricLabels& labels) const;

  std::string Render() const;

 private:
  struct Family {
    std::string type;
    std::string help;
    std::map<std::string, double> series;  // rendered label set -> value
  };
  static std::string LabelText(const MetricLabels& labels);

  mutable absl::Mutex mu_;
  std::map<std::string, Family> families_ ABSL_GUARDED_BY(mu_);
};

}  // namespace relay

#endif  // RELAY_COMMON_METRICS_H_
