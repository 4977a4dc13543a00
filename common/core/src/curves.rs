//! Curves that turn the mash level into what the exhibit changes: the drop probability the loss
//! filter applies and the codec quality the receiver asks for.
