//! The views of the central area, in tab order. A new view is registered here, one line.

use super::attention::AttentionTab;
use super::compare::CompareTab;
use super::correspond::CorrespondenceTab;
use super::coseg::CosegTab;
use super::explorer::ExplorerTab;
use super::live::LiveTab;
use super::norms::NormsTab;
use super::pca::PcaTab;
use super::state::ViewTab;
use super::train::TrainingTab;
use super::view::View;

/// Every view, in tab order (digit keys 1, 2, ... select them).
pub fn all() -> Views {
    Views(vec![
        Box::new(AttentionTab::default()),
        Box::new(PcaTab::default()),
        Box::new(CosegTab::default()),
        Box::new(CorrespondenceTab::default()),
        Box::new(TrainingTab::default()),
        Box::new(ExplorerTab::default()),
        Box::new(NormsTab::default()),
        Box::new(CompareTab::default()),
        Box::new(LiveTab::default()),
    ])
}

pub struct Views(Vec<Box<dyn View>>);

impl Views {
    /// Adds a view after the others (a plug-in or a test's view).
    pub fn push(&mut self, view: Box<dyn View>) {
        self.0.push(view);
    }

    pub fn iter(&self) -> impl Iterator<Item = &dyn View> {
        self.0.iter().map(|v| v.as_ref())
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Box<dyn View>> {
        self.0.iter_mut()
    }

    /// The view under tab `tab`.
    pub fn by_id(&mut self, tab: &ViewTab) -> Option<&mut Box<dyn View>> {
        self.0.iter_mut().find(|v| v.id() == *tab)
    }

    /// The tab at `index` (digit key `index + 1`).
    pub fn id_at(&self, index: usize) -> Option<ViewTab> {
        self.0.get(index).map(|v| v.id())
    }

    /// The view of type `T`.
    pub fn get<T: View>(&self) -> Option<&T> {
        self.iter()
            .find_map(|v| (v as &dyn std::any::Any).downcast_ref::<T>())
    }

    pub fn get_mut<T: View>(&mut self) -> Option<&mut T> {
        self.0
            .iter_mut()
            .find_map(|v| (v.as_mut() as &mut dyn std::any::Any).downcast_mut::<T>())
    }
}
