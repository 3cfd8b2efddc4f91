//! Lockstep installed as users install it: `helm install` of the chart on the environment's
//! node, in a namespace under the restricted Pod Security Standard, running its own image.

mod helm;
