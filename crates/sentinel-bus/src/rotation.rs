//! Weighted order in which a consumer visits the priority lanes, so high goes first most of the time
//! and low still gets its share when every lane is busy.

use sentinel_domain::Priority;

/// Smooth weighted round-robin (as in nginx) over the three lanes with weights 6:3:1.
#[derive(Debug, Clone, Default)]
pub struct PriorityRotation {
    current: [i64; 3],
}

impl PriorityRotation {
    /// The lanes in the order to try on this read: the lane chosen by weight first, then the rest by
    /// priority.
    pub fn next_order(&mut self) -> [Priority; 3] {
        let total: i64 = Priority::ALL.iter().map(|p| i64::from(p.weight())).sum();
        let mut best = 0;
        for (i, p) in Priority::ALL.iter().enumerate() {
            self.current[i] += i64::from(p.weight());
            if self.current[i] > self.current[best] {
                best = i;
            }
        }
        self.current[best] -= total;
        let first = Priority::ALL[best];
        let mut order = [first; 3];
        let mut k = 1;
        for p in Priority::ALL {
            if p != first {
                order[k] = p;
                k += 1;
            }
        }
        order
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_lane_leads_in_proportion_to_its_weight() {
        let mut r = PriorityRotation::default();
        let mut leads = [0; 3];
        for _ in 0..100 {
            leads[r.next_order()[0].index()] += 1;
        }
        assert_eq!(leads, [60, 30, 10]);
    }
}
