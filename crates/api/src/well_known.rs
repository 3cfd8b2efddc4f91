//! Well-known ESO labels, annotations, finalizers and field managers (placeholder until implemented).
