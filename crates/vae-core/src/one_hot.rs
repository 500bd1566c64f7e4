//! One-hot codes of class labels: how a categorical condition enters a network.

/// The one-hot rows of `labels`, `[N · classes]` row-major: row i is e_{labels[i]} ∈ {0, 1}^classes.
///
/// # Panics
/// If a label is ≥ `classes` (callers check labels where they read them, and say where).
pub fn one_hot(labels: impl ExactSizeIterator<Item = usize>, classes: usize) -> Vec<f32> {
    let mut values = vec![0.0f32; labels.len() * classes];
    for (row, label) in labels.enumerate() {
        assert!(
            label < classes,
            "class {label} is out of range for {classes} classes"
        );
        values[row * classes + label] = 1.0;
    }
    values
}

#[cfg(test)]
mod tests {
    use super::one_hot;

    #[test]
    fn each_row_has_a_single_one_at_its_label() {
        assert_eq!(
            one_hot([2, 0].into_iter(), 3),
            vec![0.0, 0.0, 1.0, 1.0, 0.0, 0.0]
        );
        assert!(one_hot(std::iter::empty(), 4).is_empty());
    }

    #[test]
    #[should_panic(expected = "class 3 is out of range for 3 classes")]
    fn a_label_out_of_range_is_refused() {
        one_hot([3].into_iter(), 3);
    }
}
